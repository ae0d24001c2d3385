use serde_json::json;

use crate::helpers::{json, spawn_app};

#[actix_web::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let res = app.get("/no/such/thing", None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        json(res).await,
        json!({"detail": "no such endpoint", "code": "not_found"})
    );
}

#[actix_web::test]
async fn wrong_methods_get_a_json_405() {
    let app = spawn_app().await;
    let res = app
        .client
        .delete(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
    assert_eq!(json(res).await["code"], "method_not_allowed");
}

#[actix_web::test]
async fn every_405_lists_the_methods_of_its_path_in_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("TRACE", "/api/v1/meta-templates/send-bulk/", "POST"),
        ("GET", "/api/v1/meta-templates/send-bulk/", "POST"),
        ("DELETE", "/api/v1/meta-templates/bulk-sends/", "GET"),
        ("PUT", "/api/v1/business-accounts/", "GET"),
        ("PATCH", "/openapi.json", "GET"),
        ("GET", "/api/v1/meta-templates/bulk-sends/x/cancel/", "POST"),
        ("DELETE", "/webhooks/meta/", "GET, POST"),
    ] {
        let res = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        assert_eq!(json(res).await["code"], "method_not_allowed");
    }
}
