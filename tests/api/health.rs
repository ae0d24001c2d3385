use crate::helpers::{json, spawn_app};

#[actix_web::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/healthz", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["status"], "ok");
}

#[actix_web::test]
async fn readyz_answers_ready_when_the_database_does() {
    let app = spawn_app().await;
    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(res).await["status"], "ready");
}

#[actix_web::test]
async fn trailing_slash_is_optional() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz/", None).await.status(), 200);
    assert_eq!(app.get("/readyz/", None).await.status(), 200);
}
