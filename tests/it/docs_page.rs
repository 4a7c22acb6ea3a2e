//! `/docs`: a strict Content-Security-Policy, `nosniff`, and every script and stylesheet it
//! loads pinned to a release and integrity-checked.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use syncroot_testkit::TestApp;

/// Every `<tag …>` opening tag in `html`, as its text.
fn tags<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let tail = &rest[at..];
        let end = tail.find('>').expect("a closed tag");
        out.push(&tail[..=end]);
        rest = &tail[end..];
    }
    out
}

/// The value of `name="…"` in an opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// The text of every inline `<script>…</script>`.
fn inline_scripts(html: &str) -> Vec<&str> {
    html.split("<script>")
        .skip(1)
        .filter_map(|s| s.split("</script>").next())
        .collect()
}

#[tokio::test]
async fn the_docs_page_loads_only_pinned_integrity_checked_assets_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("x-content-type-options"), "nosniff");
    let csp = header("content-security-policy");
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name).filter(|v| v.starts_with(' ')))
            .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
    };
    assert_eq!(directive("default-src"), ["'none'"]);
    assert_eq!(directive("frame-ancestors"), ["'none'"]);
    assert_eq!(directive("base-uri"), ["'none'"]);
    let script_src = directive("script-src");
    assert!(
        !script_src.iter().any(|s| s == "'unsafe-inline'"
            || s == "'unsafe-eval'"
            || s == "*"
            || s.ends_with(':')
            || s.ends_with('/')),
        "script-src too wide: {script_src:?}"
    );
    let html = r.text().await.unwrap();

    let scripts = tags(&html, "script");
    let links = tags(&html, "link");
    assert!(scripts.len() >= 2 && !links.is_empty(), "{html}");
    for tag in scripts.iter().chain(&links) {
        let Some(url) = attr(tag, "src").or_else(|| attr(tag, "href")) else {
            continue; // an inline script: checked by its hash below
        };
        let version = url
            .split_once('@')
            .and_then(|(_, v)| v.split('/').next())
            .unwrap_or_else(|| panic!("no pinned version in {url}"));
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{url}: '{version}' is not an exact release"
        );
        let sri = attr(tag, "integrity").unwrap_or_else(|| panic!("no integrity on {tag}"));
        let digest = sri
            .strip_prefix("sha384-")
            .unwrap_or_else(|| panic!("{tag}: not sha384"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(digest)
                .map(|d| d.len()),
            Ok(48),
            "{tag}: not a sha384 digest"
        );
        assert_eq!(attr(tag, "crossorigin"), Some("anonymous"), "{tag}");
        let allowed = if tag.starts_with("<script") {
            &script_src
        } else {
            &directive("style-src")
        };
        assert!(allowed.iter().any(|s| s == url), "{url} not in {allowed:?}");
    }
    // Each inline script is allowed by its own hash, and nothing else inline runs.
    for body in inline_scripts(&html) {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
        assert!(
            script_src.contains(&format!("'sha256-{hash}'")),
            "inline script not allowed by hash: {body}"
        );
    }
}
