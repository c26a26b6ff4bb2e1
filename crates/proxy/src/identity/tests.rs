//! Tests of the identity modes that need no keys (single, tokens, header) and of the shared
//! pieces (user ids, bearer parsing, challenges).

use super::*;

const ALICE: &str = "alice-token-0123456789";
const SHARED: &str = "backend-shared-secret-0123";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn tokens(text: &str) -> Authenticator {
    Authenticator::Tokens(TokenStore::new(TokenTable::parse(text).unwrap()))
}

#[test]
fn user_ids_are_bounded_and_printable() {
    assert_eq!(
        UserId::new("alice@example.com").unwrap().as_str(),
        "alice@example.com"
    );
    assert_eq!(UserId::new("josé").unwrap().to_string(), "josé");
    assert_eq!(UserId::new(""), Err(InvalidUserId::Empty));
    assert_eq!(UserId::new("a b"), Err(InvalidUserId::BadCharacter));
    assert_eq!(UserId::new("a\u{7}"), Err(InvalidUserId::BadCharacter));
    assert_eq!(UserId::new(&"a".repeat(257)), Err(InvalidUserId::TooLong));
    assert!(UserId::new(&"a".repeat(256)).is_ok());
}

#[test]
fn auth_mode_spellings() {
    for mode in [
        AuthMode::Single,
        AuthMode::Tokens,
        AuthMode::Jwt,
        AuthMode::Header,
    ] {
        assert_eq!(mode.as_str().parse::<AuthMode>().unwrap(), mode);
    }
    assert!(
        "Tokens"
            .parse::<AuthMode>()
            .unwrap_err()
            .contains("single, tokens")
    );
    assert!(!AuthMode::Single.is_multi_user());
    assert!(AuthMode::Header.is_multi_user());
}

#[test]
fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
    assert_eq!(
        bearer(&headers(&[("authorization", "Bearer abc")])),
        Some("abc")
    );
    assert_eq!(
        bearer(&headers(&[("authorization", "bearer  abc ")])),
        Some("abc")
    );
    assert_eq!(
        bearer(&headers(&[("authorization", "BEARER abc")])),
        Some("abc")
    );
    assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
    assert_eq!(bearer(&headers(&[("authorization", "Bearer ")])), None);
    assert_eq!(bearer(&headers(&[("authorization", "Bearer")])), None);
    assert_eq!(bearer(&HeaderMap::new()), None);
}

#[tokio::test]
async fn single_mode_is_the_one_user_behind_the_optional_token() {
    let alice = UserId::new("alice").unwrap();
    let open = Authenticator::Single {
        user: alice.clone(),
        token: None,
    };
    assert_eq!(open.identify(&HeaderMap::new()).await.unwrap(), alice);
    let guarded = Authenticator::Single {
        user: alice.clone(),
        token: Some(SecretString::from(SHARED)),
    };
    let auth = format!("Bearer {SHARED}");
    assert_eq!(
        guarded
            .identify(&headers(&[("authorization", &auth)]))
            .await
            .unwrap(),
        alice
    );
    assert!(matches!(
        guarded.identify(&HeaderMap::new()).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        guarded
            .identify(&headers(&[("authorization", "Bearer wrong")]))
            .await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn tokens_mode_selects_the_user_and_reload_swaps_the_table() {
    let auth = tokens(&format!("alice {ALICE}\n"));
    let alice_header = format!("Bearer {ALICE}");
    let user = auth
        .identify(&headers(&[("authorization", &alice_header)]))
        .await
        .unwrap();
    assert_eq!(user.as_str(), "alice");
    let wrong = auth
        .identify(&headers(&[("authorization", "Bearer nobody-0123456789")]))
        .await
        .unwrap_err();
    assert!(matches!(wrong, AuthError::InvalidToken(_)));
    assert!(!wrong.is_gateway_fault());
    assert!(matches!(
        auth.identify(&HeaderMap::new()).await,
        Err(AuthError::Missing)
    ));

    let Authenticator::Tokens(store) = &auth else {
        unreachable!()
    };
    store.replace(TokenTable::parse("bob bob-token-abcdefghijkl\n").unwrap());
    assert!(
        auth.identify(&headers(&[("authorization", &alice_header)]))
            .await
            .is_err()
    );
    let bob = auth
        .identify(&headers(&[(
            "authorization",
            "Bearer bob-token-abcdefghijkl",
        )]))
        .await
        .unwrap();
    assert_eq!(bob.as_str(), "bob");
}

#[tokio::test]
async fn header_mode_needs_the_shared_token_and_exactly_one_user_header() {
    let auth = Authenticator::Header {
        name: HeaderName::from_static("x-toolgate-user"),
        token: SecretString::from(SHARED),
    };
    let shared = format!("Bearer {SHARED}");
    let user = auth
        .identify(&headers(&[
            ("authorization", &shared),
            ("x-toolgate-user", "carol"),
        ]))
        .await
        .unwrap();
    assert_eq!(user.as_str(), "carol");
    // The user header alone is not enough: anyone could send it.
    assert!(matches!(
        auth.identify(&headers(&[("x-toolgate-user", "carol")]))
            .await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        auth.identify(&headers(&[
            ("authorization", "Bearer wrong-wrong-wrong-wrong"),
            ("x-toolgate-user", "carol")
        ]))
        .await,
        Err(AuthError::InvalidToken(_))
    ));
    for bad in [
        vec![("authorization", shared.as_str())],
        vec![
            ("authorization", shared.as_str()),
            ("x-toolgate-user", "carol"),
            ("x-toolgate-user", "dave"),
        ],
        vec![("authorization", shared.as_str()), ("x-toolgate-user", "")],
    ] {
        assert!(matches!(
            auth.identify(&headers(&bad)).await,
            Err(AuthError::BadUserHeader { .. })
        ));
    }
}

#[test]
fn non_jwt_challenge_is_a_plain_bearer_challenge() {
    let auth = tokens("");
    let value = auth.challenge(&AuthError::Missing);
    assert_eq!(value, "Bearer realm=\"toolgate\"");
}
