//! The committed OpenAPI document (`docs/openapi.json`) is the one the code generates.

#[test]
fn committed_openapi_matches_the_code() {
    let generated = botlink_server::api::openapi()
        .to_pretty_json()
        .expect("the document renders");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json exists");
    assert!(
        committed.trim_end() == generated.trim_end(),
        "docs/openapi.json is out of date with the code: regenerate it with\n  cargo run -p botlink-server -- openapi > docs/openapi.json\nand commit it"
    );
}
