//! Toolkit logos the sandbox serves at `/_sandbox/logos/{slug}.svg`, the URLs its catalog puts
//! in `meta.logo` (as Composio's catalog points at its logo CDN).
//!
//! The sandbox works offline and ships no third-party artwork, so these are simple marks drawn
//! here in each brand's colours, recognisable at the 40 px the connections page shows them:
//! enough for a newcomer to see "the Gmail one" and for the browser test to tell a logo that
//! rendered from the letter fallback. Toolkits without a mark get a coloured initial.

use crate::catalog::Toolkit;

/// `(slug, the SVG body inside a 64×64 view box)`.
const MARKS: &[(&str, &str)] = &[
    (
        "gmail",
        "<rect width=\"64\" height=\"64\" rx=\"12\" fill=\"#fff\"/>\
         <rect x=\"8\" y=\"16\" width=\"10\" height=\"34\" rx=\"2\" fill=\"#4285F4\"/>\
         <rect x=\"46\" y=\"16\" width=\"10\" height=\"34\" rx=\"2\" fill=\"#34A853\"/>\
         <path d=\"M12 20 L32 36 L52 20\" fill=\"none\" stroke=\"#EA4335\" stroke-width=\"8\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\
         <path d=\"M46 16 L56 16 L56 24 Z\" fill=\"#FBBC04\"/>",
    ),
    (
        "github",
        "<circle cx=\"32\" cy=\"32\" r=\"32\" fill=\"#181717\"/>\
         <path d=\"M19 30 L20 15 L29 22 Z M45 30 L44 15 L35 22 Z\" fill=\"#fff\"/>\
         <ellipse cx=\"32\" cy=\"33\" rx=\"15\" ry=\"13\" fill=\"#fff\"/>\
         <rect x=\"27\" y=\"44\" width=\"10\" height=\"12\" rx=\"3\" fill=\"#fff\"/>\
         <circle cx=\"26\" cy=\"33\" r=\"2.5\" fill=\"#181717\"/><circle cx=\"38\" cy=\"33\" r=\"2.5\" fill=\"#181717\"/>",
    ),
    (
        "slack",
        "<rect width=\"64\" height=\"64\" rx=\"12\" fill=\"#fff\"/>\
         <rect x=\"20\" y=\"8\" width=\"9\" height=\"30\" rx=\"4.5\" fill=\"#36C5F0\"/>\
         <rect x=\"26\" y=\"20\" width=\"30\" height=\"9\" rx=\"4.5\" fill=\"#2EB67D\"/>\
         <rect x=\"35\" y=\"26\" width=\"9\" height=\"30\" rx=\"4.5\" fill=\"#ECB22E\"/>\
         <rect x=\"8\" y=\"35\" width=\"30\" height=\"9\" rx=\"4.5\" fill=\"#E01E5A\"/>",
    ),
    (
        "notion",
        "<rect x=\"6\" y=\"6\" width=\"52\" height=\"52\" rx=\"8\" fill=\"#fff\" stroke=\"#000\" stroke-width=\"4\"/>\
         <path d=\"M20 46 V18 H25 L39 38 V18 H44 V46 H39 L25 26 V46 Z\" fill=\"#000\"/>",
    ),
    (
        "linear",
        "<circle cx=\"32\" cy=\"32\" r=\"30\" fill=\"#5E6AD2\"/>\
         <path d=\"M14 34 L30 50 M14 24 L40 50 M20 16 L48 44 M30 12 L52 34\" stroke=\"#fff\" stroke-width=\"4\" stroke-linecap=\"round\"/>",
    ),
    (
        "hackernews",
        "<rect width=\"64\" height=\"64\" rx=\"6\" fill=\"#FF6600\"/>\
         <path d=\"M18 14 L32 34 L46 14 M32 34 V52\" fill=\"none\" stroke=\"#fff\" stroke-width=\"7\" stroke-linejoin=\"round\"/>",
    ),
    (
        "googlecalendar",
        "<rect x=\"6\" y=\"6\" width=\"52\" height=\"52\" rx=\"8\" fill=\"#fff\" stroke=\"#4285F4\" stroke-width=\"4\"/>\
         <rect x=\"6\" y=\"6\" width=\"52\" height=\"14\" rx=\"6\" fill=\"#4285F4\"/>\
         <text x=\"32\" y=\"50\" font-family=\"sans-serif\" font-weight=\"700\" font-size=\"24\" text-anchor=\"middle\" fill=\"#1A73E8\">31</text>",
    ),
    (
        "googledrive",
        "<path d=\"M22 8 H42 L60 40 H40 Z\" fill=\"#FBBC04\"/>\
         <path d=\"M22 8 L4 40 L14 56 L32 24 Z\" fill=\"#34A853\"/>\
         <path d=\"M14 56 H52 L60 40 H24 Z\" fill=\"#4285F4\"/>",
    ),
    (
        "discord",
        "<rect width=\"64\" height=\"64\" rx=\"14\" fill=\"#5865F2\"/>\
         <path d=\"M14 44 C14 30 18 22 24 18 L28 22 H36 L40 18 C46 22 50 30 50 44 C46 48 42 49 40 49 L37 45 H27 L24 49 C22 49 18 48 14 44 Z\" fill=\"#fff\"/>\
         <circle cx=\"25\" cy=\"35\" r=\"4\" fill=\"#5865F2\"/><circle cx=\"39\" cy=\"35\" r=\"4\" fill=\"#5865F2\"/>",
    ),
    (
        "stripe",
        "<rect width=\"64\" height=\"64\" rx=\"12\" fill=\"#635BFF\"/>\
         <path d=\"M42 20 C38 17 22 16 22 25 C22 34 42 30 42 40 C42 49 26 48 20 44\" fill=\"none\" stroke=\"#fff\" stroke-width=\"7\" stroke-linecap=\"round\"/>",
    ),
];

/// The SVG document for `toolkit`: its mark, or a coloured initial when it has none.
pub(crate) fn svg(toolkit: &Toolkit) -> String {
    match MARKS.iter().find(|(slug, _)| *slug == toolkit.slug) {
        Some((_, body)) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">{body}</svg>"
        ),
        None => crate::pages::logo_svg(toolkit.slug, toolkit.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mark_belongs_to_a_catalog_toolkit_and_is_one_svg() {
        for (slug, body) in MARKS {
            let toolkit = crate::catalog::find(slug).unwrap_or_else(|| panic!("{slug}"));
            let svg = svg(toolkit);
            assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
            assert_eq!(svg.matches("<svg").count(), 1, "{slug}");
            assert!(
                svg.ends_with("</svg>") && !body.contains("</svg>"),
                "{slug}"
            );
            // Each mark is drawn, not a letter: the fallback is the only one with <text>.
            assert!(!svg.contains(">G</text>"), "{slug}");
        }
    }

    #[test]
    fn toolkits_without_a_mark_get_their_initial() {
        let trello = crate::catalog::find("trello").expect("trello");
        assert!(svg(trello).contains(">T</text>"));
    }
}
