//! `/docs`: the interactive viewer of the OpenAPI document (Swagger UI), hardened for a page
//! that runs script in an operator's browser.
//!
//! Swagger UI comes from jsDelivr, pinned to one release, and the browser checks each file
//! against its Subresource Integrity hash before running it. The hashes are the sha384 of the
//! files in the npm tarball `swagger-ui-dist-5.36.0.tgz` (`npm pack swagger-ui-dist@5.36.0`,
//! then `openssl dgst -sha384 -binary package/FILE | openssl base64 -A`); jsDelivr serves npm
//! files byte for byte. A new release means new hashes, computed the same way.
//!
//! The page's Content-Security-Policy allows exactly those two files and the one inline
//! script (by its hash), nothing else from anywhere; `/openapi.json` and "try it out" calls go
//! to this origin only. Not here: vendored copies, so the page needs a browser with internet
//! access (the spec itself is served by SyncRoot).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Where the pinned release lives.
const SWAGGER_UI: &str = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.36.0";
/// `swagger-ui-bundle.js` and its SRI hash (see the module doc).
const BUNDLE: (&str, &str) = (
    "swagger-ui-bundle.js",
    "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+",
);
/// `swagger-ui.css` and its SRI hash.
const STYLESHEET: (&str, &str) = (
    "swagger-ui.css",
    "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc",
);
/// Starts the viewer; allowed by its hash in the policy. No validator badge: it would send the
/// spec's URL to a third party.
const INIT: &str = r##"window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", presets: [SwaggerUIBundle.presets.apis], validatorUrl: null, deepLinking: true});"##;

/// The page and its Content-Security-Policy, built once.
static PAGE: LazyLock<(String, String)> = LazyLock::new(|| {
    let (js, js_sri) = BUNDLE;
    let (css, css_sri) = STYLESHEET;
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SyncRoot API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{SWAGGER_UI}/{css}" integrity="{css_sri}" crossorigin="anonymous">
</head>
<body><div id="swagger-ui"></div>
<script src="{SWAGGER_UI}/{js}" integrity="{js_sri}" crossorigin="anonymous"></script>
<script>{INIT}</script>
<noscript>The interactive viewer needs JavaScript; the spec is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>"#
    );
    let init_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(INIT));
    // Styles: Swagger UI sets inline style attributes on what it renders, and a style cannot
    // run code; data: images are the icons its stylesheet embeds.
    let policy = format!(
        "default-src 'none'; script-src {SWAGGER_UI}/{js} 'sha256-{init_hash}'; \
         style-src {SWAGGER_UI}/{css} 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    (html, policy)
});

/// An interactive viewer of the OpenAPI document.
#[utoipa::path(get, path = "/docs", tag = super::health::TAG, operation_id = "getDocs",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
pub async fn docs() -> Response {
    let (html, policy) = &*PAGE;
    (
        [
            (header::CONTENT_SECURITY_POLICY, policy.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html.as_str()),
    )
        .into_response()
}
