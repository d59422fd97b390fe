//! `GET /api/openapi.json`: the hand-maintained OpenAPI 3.1 document of every route
//! (`openapi.json` beside this file). A test checks that it lists exactly the routes of the
//! router, method by method.

use axum::extract::State;
use axum::Json;

use super::Shared;
use serde_json::Value;

const DOCUMENT: &str = include_str!("openapi.json");

/// The OpenAPI document, with this build's version.
pub fn openapi_document() -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON");
    doc["info"]["version"] = Value::String(env!("CARGO_PKG_VERSION").to_string());
    doc
}

/// The document as this server serves it: `POST /api/runs` takes one of its configured
/// projects (any other name is `404`), so the body's `project` is an `enum` of them; a server
/// that follows no git repository has no `POST /hooks/git` (it only answers `404`).
pub(crate) async fn serve(State(state): State<Shared>) -> Json<Value> {
    let mut doc = openapi_document();
    let names: Vec<Value> = state
        .projects
        .all()
        .iter()
        .map(|p| Value::String(p.name.clone()))
        .collect();
    let project = doc.pointer_mut(
        "/paths/~1api~1runs/post/requestBody/content/application~1json/schema/properties/project",
    );
    if let Some(Value::Object(project)) = project {
        project.insert("enum".to_string(), Value::Array(names));
    }
    if state.git.is_none() {
        if let Some(Value::Object(paths)) = doc.get_mut("paths") {
            paths.remove("/hooks/git");
        }
    }
    Json(doc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_exactly_the_routes() {
        let doc = super::openapi_document();
        let paths = doc["paths"].as_object().unwrap();
        let routes = super::super::routes();
        for (method, path) in &routes {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "route `{} {path}` is missing from openapi.json",
                method.to_uppercase()
            );
        }
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                assert!(
                    routes.iter().any(|(m, p)| m == method && p == path),
                    "openapi.json documents `{} {path}`, which the router does not serve",
                    method.to_uppercase()
                );
            }
        }
    }
}
