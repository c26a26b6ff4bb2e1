//! Parsing of user-supplied upstream headers: `--header 'Name: value'` arguments and
//! `--header-file` contents, with `${VAR}` expansion.
//!
//! The syntax follows mcp-remote's conventions so existing client configs carry over: the
//! value may follow the colon with or without a space (`Authorization:${AUTH}` survives argument
//! mangling on Windows), `${VAR}` is replaced by a variable's value, and a header file holds one
//! `Name: value` per line with `#` comments. This module never reads the environment or the file
//! system itself: the caller passes a variable lookup and the file's text, so the binary and the
//! stdio bridge decide where values come from.
//!
//! Values usually carry credentials, so they are marked sensitive and no error message here
//! ever includes a value.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Why a header argument or header file could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderArgError {
    /// The argument has no `:` separating name and value. The argument itself is not echoed:
    /// it may be a pasted secret.
    #[error("a header argument is not of the form 'Name: value' (no colon)")]
    MissingColon,
    /// The part before the colon is not a valid HTTP header name.
    #[error("{0:?} is not a valid HTTP header name")]
    InvalidName(String),
    /// The value (after expansion) contains characters HTTP does not allow, e.g. a newline.
    #[error("the value of header {0} contains characters not allowed in HTTP headers")]
    InvalidValue(String),
    /// `${NAME}` refers to a variable that is not set.
    #[error("header {header}: variable ${{{variable}}} is not set")]
    UndefinedVariable {
        /// The header whose value referenced the variable.
        header: String,
        /// The variable name.
        variable: String,
    },
    /// A `${` without its closing `}`.
    #[error("header {0}: unterminated ${{...}} in value")]
    UnterminatedVariable(String),
    /// A problem on one line of a header file.
    #[error("header file line {line}: {source}")]
    FileLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        #[source]
        source: Box<HeaderArgError>,
    },
}

/// Replaces every `${NAME}` in `input` with `lookup(NAME)`; `header` names the header in errors.
///
/// A `$` not followed by `{` is kept literally, so values such as `pa$$word` need no escaping.
pub fn expand_variables(
    header: &str,
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, HeaderArgError> {
    let mut output = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        output.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(HeaderArgError::UnterminatedVariable(header.to_owned()));
        };
        let variable = &after[..end];
        match lookup(variable) {
            Some(value) => output.push_str(&value),
            None => {
                return Err(HeaderArgError::UndefinedVariable {
                    header: header.to_owned(),
                    variable: variable.to_owned(),
                });
            }
        }
        rest = &after[end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

/// Parses one `Name: value` (or `Name:value`) argument, expanding `${VAR}` in the value.
///
/// The returned value is marked sensitive so `http` redacts it in `Debug` output.
pub fn parse_header_arg(
    arg: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(HeaderName, HeaderValue), HeaderArgError> {
    let Some((raw_name, raw_value)) = arg.split_once(':') else {
        return Err(HeaderArgError::MissingColon);
    };
    let name_text = raw_name.trim();
    let name = HeaderName::from_bytes(name_text.as_bytes())
        .map_err(|_| HeaderArgError::InvalidName(name_text.to_owned()))?;
    let expanded = expand_variables(name.as_str(), raw_value.trim(), lookup)?;
    let mut value = HeaderValue::from_str(&expanded)
        .map_err(|_| HeaderArgError::InvalidValue(name.as_str().to_owned()))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Parses a header file: one `Name: value` per line; blank lines and lines starting with `#`
/// are ignored. Errors name the 1-based line number.
pub fn parse_header_file(
    contents: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderArgError> {
    let mut headers = Vec::new();
    for (index, line) in contents.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let header =
            parse_header_arg(trimmed, lookup).map_err(|source| HeaderArgError::FileLine {
                line: index + 1,
                source: Box::new(source),
            })?;
        headers.push(header);
    }
    Ok(headers)
}

/// Collects parsed headers into a map; a later header replaces an earlier one of the same name,
/// so `--header` flags can override a header file given before them.
pub fn header_map(headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(name, value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "AUTH" => Some("Bearer abc".into()),
            _ => None,
        }
    }

    #[test]
    fn both_colon_forms_and_expansion() {
        let (name, value) = parse_header_arg("X-Api-Key: ${TOKEN}", &env).unwrap();
        assert_eq!(name, "x-api-key");
        assert_eq!(value, "s3cret");
        assert!(value.is_sensitive());
        let (name, value) = parse_header_arg("Authorization:${AUTH}", &env).unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value, "Bearer abc");
        let (_, value) = parse_header_arg("X-A: pa$$word ${TOKEN}-x", &env).unwrap();
        assert_eq!(value, "pa$$word s3cret-x");
        let (_, value) = parse_header_arg("X-Url: a:b:c", &env).unwrap();
        assert_eq!(value, "a:b:c");
    }

    #[test]
    fn bad_arguments_are_clear_errors_without_values() {
        assert!(matches!(
            parse_header_arg("novalue", &env),
            Err(HeaderArgError::MissingColon)
        ));
        assert_eq!(
            parse_header_arg("bad name: x", &env),
            Err(HeaderArgError::InvalidName("bad name".into()))
        );
        let missing = parse_header_arg("X-Key: ${NOPE}", &env).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "header x-key: variable ${NOPE} is not set"
        );
        assert_eq!(
            parse_header_arg("X-Key: ${TOKEN", &env),
            Err(HeaderArgError::UnterminatedVariable("x-key".into()))
        );
        let invalid = parse_header_arg("X-Key: a\u{7f}b", &env).unwrap_err();
        assert_eq!(invalid, HeaderArgError::InvalidValue("x-key".into()));
        assert!(!invalid.to_string().contains("a\u{7f}b"));
    }

    #[test]
    fn header_file_skips_comments_and_names_bad_lines() {
        let parsed =
            parse_header_file("# creds\n\nX-Api-Key: ${TOKEN}\n  X-Team:blue  \n", &env).unwrap();
        let map = header_map(parsed);
        assert_eq!(map["x-api-key"], "s3cret");
        assert_eq!(map["x-team"], "blue");
        let error = parse_header_file("X-A: 1\nbroken\n", &env).unwrap_err();
        assert!(
            error.to_string().starts_with("header file line 2:"),
            "{error}"
        );
    }

    #[test]
    fn later_headers_replace_earlier_ones() {
        let map = header_map([
            parse_header_arg("X-A: 1", &env).unwrap(),
            parse_header_arg("x-a: 2", &env).unwrap(),
        ]);
        assert_eq!(map.get_all("x-a").iter().count(), 1);
        assert_eq!(map["x-a"], "2");
    }
}
