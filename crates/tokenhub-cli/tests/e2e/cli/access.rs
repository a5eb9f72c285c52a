//! The CLI's access checks against the same hub: wallet providers' and admin keys, the audit
//! log, shared keys, the exit codes of not found, unauthorized, hub down and usage, completions.

use super::Cli;
use crate::harness::*;
use serde_json::json;

pub(super) async fn wallet_providers_and_keys(cli: &mut Cli<'_>, dir: &std::path::Path) {
    let put = cli
        .json(&[
            "wallet-providers",
            "put",
            "cli-wallet",
            "--name",
            "CLI Wallet",
        ])
        .await;
    assert_eq!(
        put,
        json!({"providerId": "cli-wallet", "name": "CLI Wallet", "apiKeys": []})
    );
    let made = cli
        .json(&["wallet-providers", "keys", "create", "cli-wallet"])
        .await;
    let key_id = made["keyId"].as_str().unwrap().to_string();
    cli.secrets
        .push(made["apiKey"].as_str().unwrap().to_string());
    let (_, api) = cli.api("/wallet-providers/cli-wallet").await;
    assert_eq!(
        cli.json(&["wallet-providers", "get", "cli-wallet"]).await,
        api
    );
    let list = ["wallet-providers", "list", "--limit", "10"];
    let path = "/wallet-providers?limit=10";
    super::gated_page(cli, path, &list, "providerId", "cli-wallet").await;
    let table = cli
        .run(&["wallet-providers", "keys", "list", "cli-wallet"])
        .await
        .ok()
        .stdout;
    assert!(table.contains(&key_id), "{table}");
    cli.run(&["wallet-providers", "keys", "revoke", "cli-wallet", &key_id])
        .await
        .ok();
    let after = cli.json(&["wallet-providers", "get", "cli-wallet"]).await;
    assert!(after["apiKeys"][0]["revokedMs"].is_i64(), "{after}");

    // Admin keys through the API, as the admin key.
    let (_, api) = cli.api("/admin-keys").await;
    assert_eq!(cli.json(&["admin-keys", "list", "--api"]).await, api);
    let made = cli
        .run(&[
            "admin-keys",
            "create",
            "--api",
            "--role",
            "read-only",
            "--label",
            "ro",
        ])
        .await;
    let read_only = made.ok().stdout.trim().to_string();
    assert!(read_only.starts_with("thk_"));
    cli.secrets.push(read_only.clone());
    let url = cli.world.hub.url();
    let ran = cli
        .run_with(&["tokens", "suspend", "TKNNONE"], Some(&read_only), &url)
        .await;
    assert!(
        ran.exits(5).stderr.contains("FORBIDDEN"),
        "a read-only key changes nothing"
    );
    let ro_id = read_only.split('_').nth(1).unwrap();
    let table = cli.run(&["admin-keys", "list", "--api"]).await.ok().stdout;
    assert!(
        table.contains(ro_id) && table.contains("read-only"),
        "{table}"
    );
    cli.run(&["admin-keys", "revoke", "--api", ro_id])
        .await
        .ok();
    let ran = cli.run_with(&["health"], Some(&read_only), &url).await;
    assert!(
        ran.exits(5).stderr.contains("UNAUTHORIZED"),
        "a revoked key"
    );

    // The audit log, a page at a time: the API's page, and the hint to the next one.
    let (_, api) = cli.api("/audit?limit=3").await;
    assert_eq!(cli.json(&["audit", "list", "--limit", "3"]).await, api);
    let ran = cli.run(&["audit", "list", "--limit", "3"]).await.ok();
    let next = api["nextAfter"].as_i64().unwrap();
    assert!(
        ran.stderr.contains(&format!("more: --after {next}")),
        "{}",
        ran.stderr
    );
    for e in api["entries"].as_array().unwrap() {
        let row = format!("{} ", e["seq"]);
        let action = e["action"].as_str().unwrap();
        assert!(
            ran.stdout.contains(&row) && ran.stdout.contains(action),
            "{}",
            ran.stdout
        );
    }

    // Shared keys: imported through the API (again: unchanged; another key on the index: refused).
    let set = tokenhub_crypto::KeySet {
        keys: vec![tokenhub_crypto::SharedKey::generate(
            "KEK-CLI",
            tokenhub_crypto::Algorithm::Aes128,
            "kek",
        )],
    };
    let file = dir.join("keys.json");
    std::fs::write(&file, serde_json::to_vec(&set).unwrap()).unwrap();
    cli.secrets.push(set.keys[0].hex.clone());
    let import = [
        "keys",
        "import",
        "--api",
        "--tsp",
        "e2e-tsp",
        "--file",
        file.to_str().unwrap(),
    ];
    let imported = cli.json(&import).await;
    assert_eq!(
        imported,
        json!([{"keyIndex": "KEK-CLI", "outcome": "IMPORTED"}])
    );
    assert!(cli.run(&import).await.ok().stdout.contains("UNCHANGED"));
    let other = tokenhub_crypto::KeySet {
        keys: vec![tokenhub_crypto::SharedKey::generate(
            "KEK-CLI",
            tokenhub_crypto::Algorithm::Aes128,
            "kek",
        )],
    };
    std::fs::write(&file, serde_json::to_vec(&other).unwrap()).unwrap();
    cli.secrets.push(other.keys[0].hex.clone());
    assert!(cli.run(&import).await.exits(4).stdout.contains("REFUSED"));
    let (_, api) = cli.api("/shared-keys").await;
    let listed = cli.json(&["keys", "list"]).await;
    assert_eq!(listed, api);
    let table = cli.run(&["keys", "list"]).await.ok().stdout;
    assert!(
        table.contains("KEK-CLI") && table.contains(&set.keys[0].kcv),
        "{table}"
    );
    assert!(!table.contains(&set.keys[0].hex));
}

pub(super) async fn exit_codes(cli: &Cli<'_>, token: &str) {
    let url = cli.world.hub.url();
    let health = cli.run(&["health"]).await.ok().stdout;
    assert!(
        health.contains("outbox") && health.contains("RUNNING"),
        "{health}"
    );

    // The nodes: the one hub, live, as the API lists it (its heartbeat moves on meanwhile).
    let (_, api) = cli.api("/nodes").await;
    let got = cli.json(&["nodes"]).await;
    assert_eq!(
        got["nodes"][0]["nodeId"], api["nodes"][0]["nodeId"],
        "{got}"
    );
    assert_eq!(got["nodes"][0]["live"], true, "{got}");
    let node = api["nodes"][0]["nodeId"].as_str().expect("the hub's node");
    let table = cli.run(&["nodes"]).await.ok().stdout;
    assert!(table.contains(node) && table.contains("true"), "{table}");

    // The overview, where the hub has it.
    match cli.api("/overview").await {
        (200, api) => {
            let got = cli.run(&["-o", "json", "overview"]).await.ok().json();
            assert_eq!(
                got["tsps"].as_array().map(Vec::len),
                api["tsps"].as_array().map(Vec::len)
            );
            let table = cli.run(&["overview"]).await.ok().stdout;
            assert!(
                table.contains("e2e-tsp") && table.contains("dead letters"),
                "{table}"
            );
        }
        (status, _) => {
            let ran = cli.run(&["overview"]).await;
            assert_eq!(ran.code, super::code_of(status), "{}", ran.stderr);
        }
    }

    let ran = cli.run(&["tokens", "get", "TKNNOSUCHTOKEN"]).await.exits(3);
    assert!(
        ran.stderr.contains("NOT_FOUND (HTTP 404)"),
        "{}",
        ran.stderr
    );
    let ran = cli
        .run_with(&["tokens", "get", token], Some("thk_wrong_key"), &url)
        .await;
    assert!(ran.exits(5).stderr.contains("UNAUTHORIZED"));
    let down = format!("http://127.0.0.1:{}", free_port());
    let ran = cli
        .run_with(
            &["tokens", "get", token],
            Some(&cli.world.hub.admin_key),
            &down,
        )
        .await;
    let ran = ran.exits(6);
    assert!(ran.stderr.contains("cannot be reached"), "{}", ran.stderr);
    let ran = cli.run_with(&["tokens", "get", token], None, &url).await;
    assert!(ran.exits(2).stderr.contains("TOKENHUB_ADMIN_KEY"));
    cli.run(&["tokens", "frobnicate"]).await.exits(2);
    cli.run(&["--output", "yaml", "tokens", "get", token])
        .await
        .exits(2);
    let help = cli.run(&["tokens", "get", "--help"]).await.ok().stdout;
    assert!(
        help.contains("Exit codes:") && help.contains("6  the hub is unreachable"),
        "{help}"
    );
}

pub(super) async fn completions(cli: &Cli<'_>) {
    for shell in ["bash", "zsh", "fish"] {
        let ran = cli.run(&["completions", shell]).await.ok();
        assert!(
            ran.stdout.len() > 1000 && ran.stdout.contains("wallet-providers"),
            "{shell}: {} bytes",
            ran.stdout.len()
        );
    }
    cli.run(&["completions", "tcsh"]).await.exits(2);
}
