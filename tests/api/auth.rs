use serde_json::json;

use crate::helpers::{json, spawn_app};

const PROTECTED: &str = "/api/v1/business-accounts/";

#[actix_web::test]
async fn a_missing_key_gets_the_documented_401() {
    let app = spawn_app().await;
    let res = app.get(PROTECTED, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await,
        json!({
            "detail": "Este endpoint requiere autenticacion con API Key (header X-API-Key)",
            "code": "missing_api_key"
        })
    );
}

#[actix_web::test]
async fn unknown_and_malformed_keys_get_the_documented_401() {
    let app = spawn_app().await;
    app.create_tenant("Acme");
    for key in [
        "mindo_AAAAAAAAAAAAAAAAAAAAAAAA",
        "mindo_short",
        "not-a-key",
        "mindo_ÄAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let res = app.get(PROTECTED, Some(key)).await;
        assert_eq!(res.status(), 401, "{key}");
        assert_eq!(
            json(res).await,
            json!({"detail": "API Key expirada", "code": "invalid_api_key"}),
            "{key}"
        );
    }
}

#[actix_web::test]
async fn a_key_created_by_the_cli_authenticates_and_sees_its_tenant() {
    let app = spawn_app().await;
    let (_, key) = app.create_tenant("Mindo Software");
    let res = app.get(PROTECTED, Some(&key)).await;
    assert_eq!(res.status(), 200);
    let body = json(res).await;
    assert_eq!(body["companyName"], "Mindo Software");
    assert_eq!(body["apiKeyName"], "Default");
}

#[actix_web::test]
async fn a_key_with_one_wrong_character_is_refused() {
    let app = spawn_app().await;
    let (_, key) = app.create_tenant("Acme");
    let last = key.chars().last().unwrap();
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    let res = app.get(PROTECTED, Some(&wrong)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(json(res).await["code"], "invalid_api_key");
}

#[actix_web::test]
async fn a_revoked_key_stops_working_and_other_keys_keep_working() {
    let app = spawn_app().await;
    let (tenant_id, first_key) = app.create_tenant("Acme");
    let (code, out, err) = app.cli(&[
        "api-key",
        "create",
        "--tenant",
        &tenant_id.to_string(),
        "--name",
        "CI key",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let second_key = created["api_key"].as_str().unwrap().to_owned();
    let second_id = created["api_key_id"].as_i64().unwrap();

    let res = app.get(PROTECTED, Some(&second_key)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["apiKeyName"], "CI key");

    let (code, _, err) = app.cli(&["api-key", "revoke", &second_id.to_string()]);
    assert_eq!(code, 0, "{err}");

    let res = app.get(PROTECTED, Some(&second_key)).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        json(res).await,
        json!({"detail": "API Key expirada", "code": "invalid_api_key"})
    );
    assert_eq!(app.get(PROTECTED, Some(&first_key)).await.status(), 200);
}

#[actix_web::test]
async fn tenants_see_only_themselves() {
    let app = spawn_app().await;
    let (_, acme) = app.create_tenant("Acme");
    let (_, globex) = app.create_tenant("Globex");
    assert_eq!(
        json(app.get(PROTECTED, Some(&acme)).await).await["companyName"],
        "Acme"
    );
    assert_eq!(
        json(app.get(PROTECTED, Some(&globex)).await).await["companyName"],
        "Globex"
    );
}
