// The OpenAPI documents (schemas/openapi/*.yaml) as JSON, embedded for `/api/openapi/{name}.json`
// and the `/api/docs` page: converted here so the service parses no YAML at run time.
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from("../../schemas/openapi");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", dir.display());
    for name in ["query", "auth", "capture"] {
        let path = dir.join(format!("{name}.yaml"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: serde_json::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
        let json = serde_json::to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::write(out.join(format!("{name}.json")), json)
            .unwrap_or_else(|e| panic!("cannot write {name}.json: {e}"));
    }
}
