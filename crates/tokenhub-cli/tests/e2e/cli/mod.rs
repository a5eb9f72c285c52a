//! The operator's CLI against a real `tokenhub serve`: each resource driven through the binary,
//! its `--output json` compared with what the admin API answers, its tables holding the expected
//! rows, and the exit codes a script relies on (not found 3, refused 4, unauthorized 5, hub down
//! 6, usage 2). One hub for every check.

mod access;

use crate::harness::*;
use access::{completions, exit_codes, wallet_providers_and_keys};
use serde_json::{json, Value};
use std::time::Duration;

/// What a run of the binary left.
pub(super) struct Ran {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Ran {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub(super) fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub(super) fn exits(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The CLI pointed at one hub with one admin key.
pub(super) struct Cli<'a> {
    pub(super) world: &'a World,
    /// Secrets no run may print to stderr (the admin key too).
    pub(super) secrets: Vec<String>,
}

impl Cli<'_> {
    /// `tokenhub ARGS` with the hub's URL and the admin key in the environment.
    pub(super) async fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, Some(&self.world.hub.admin_key), &self.world.hub.url())
            .await
    }

    pub(super) async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        self.run(&all).await.ok().json()
    }

    /// [`Self::run`] with `input` on stdin.
    pub(super) async fn run_input(&self, args: &[&str], input: &[u8]) -> Ran {
        let (key, url) = (&self.world.hub.admin_key, self.world.hub.url());
        self.run_full(args, Some(key), &url, input).await
    }

    pub(super) async fn run_with(&self, args: &[&str], key: Option<&str>, url: &str) -> Ran {
        self.run_full(args, key, url, b"").await
    }

    async fn run_full(&self, args: &[&str], key: Option<&str>, url: &str, input: &[u8]) -> Ran {
        use std::process::Stdio;
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokenhub"));
        c.args(args)
            .env("TOKENHUB_URL", url)
            .env_remove("TOKENHUB_ADMIN_KEY")
            .env_remove("TOKENHUB_CONFIG")
            .env_remove("TOKENHUB_DATABASE_URL");
        if let Some(k) = key {
            c.env("TOKENHUB_ADMIN_KEY", k);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        };
        for s in self.secrets.iter().chain([&self.world.hub.admin_key]) {
            assert!(
                !ran.stderr.contains(s.as_str()),
                "a secret on stderr: {args:?}"
            );
        }
        ran
    }

    /// The admin API's own answer to a GET.
    pub(super) async fn api(&self, path: &str) -> (u16, Value) {
        let r = self
            .world
            .http
            .get(format!("{}/admin/v1{path}", self.world.hub.url()))
            .bearer_auth(&self.world.hub.admin_key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_resource_through_the_cli_with_tables_json_and_exit_codes() {
    let options = WorldOptions {
        devices: 1,
        hub: HubSettings {
            env: vec![("TOKENHUB_OUTBOUND_ALLOW".into(), "127.0.0.0/8".into())],
            ..HubSettings::default()
        },
        ..WorldOptions::default()
    };
    let world = World::start(Backend::Sqlite, options).await;
    let mut cli = Cli {
        world: &world,
        secrets: vec![
            "rq-api-key-0123456789".into(),
            "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1jbGk=".into(),
        ],
    };
    let dir = tempfile::tempdir().unwrap();

    tsps_and_issuers(&cli).await;
    let token = profiles_campaigns_and_tokens(&cli, dir.path()).await;
    requestors_and_notifications(&mut cli, &token).await;
    wallet_providers_and_keys(&mut cli, dir.path()).await;
    exit_codes(&cli, &token).await;
    completions(&cli).await;
}

async fn tsps_and_issuers(cli: &Cli<'_>) {
    let mut put = cli
        .json(&[
            "tsps",
            "put",
            "cli-tsp",
            "--base-url",
            "http://127.0.0.1:9/tsp",
            "--rate-limit",
            "5",
        ])
        .await;
    // A TSP just registered has not been checked yet.
    let health = put.as_object_mut().and_then(|o| o.remove("health"));
    assert_eq!(
        health.as_ref().map(|h| &h["state"]),
        Some(&json!("UNKNOWN"))
    );
    assert_eq!(
        put,
        json!({"tspId": "cli-tsp", "baseUrl": "http://127.0.0.1:9/tsp", "rateLimitPerSecond": 5,
               "acceptsExtraParameters": false})
    );
    let table = cli
        .run(&[
            "tsps",
            "put",
            "cli-tsp",
            "--base-url",
            "http://127.0.0.1:9/tsp",
        ])
        .await;
    let table = table.ok().stdout;
    assert!(
        table.contains("cli-tsp") && table.contains("http://127.0.0.1:9/tsp"),
        "{table}"
    );
    // Reading TSPs back (with their health): where the hub has the routes, the CLI shows their
    // answers; where it has not, it exits with the code of the hub's status.
    match cli.api("/tsps/e2e-tsp").await {
        (200, api) => {
            let got = cli.json(&["tsps", "get", "e2e-tsp"]).await;
            assert_eq!(
                (&got["tspId"], &got["baseUrl"], &got["health"]["state"]),
                (&api["tspId"], &api["baseUrl"], &api["health"]["state"])
            );
            let table = cli.run(&["tsps", "get", "e2e-tsp"]).await.ok().stdout;
            assert!(table.contains("health.state"), "{table}");
        }
        (status, _) => {
            let ran = cli.run(&["tsps", "get", "e2e-tsp"]).await;
            assert_eq!(ran.code, code_of(status), "{}", ran.stderr);
        }
    }
    match cli.api("/tsps").await {
        (200, api) => {
            let ids = |v: &Value| {
                let all = v.as_array().unwrap().iter();
                all.map(|t| t["tspId"].clone()).collect::<Vec<_>>()
            };
            assert_eq!(ids(&cli.json(&["tsps", "list"]).await), ids(&api));
            let table = cli.run(&["tsps", "list"]).await.ok().stdout;
            assert!(
                table.contains("e2e-tsp") && table.contains("cli-tsp"),
                "{table}"
            );
        }
        (status, _) => {
            let ran = cli.run(&["tsps", "list"]).await;
            assert_eq!(ran.code, code_of(status), "{}", ran.stderr);
        }
    }

    // The card encryption key, from stdin.
    let jwk = cli.world.tsp.encryption_jwk().to_string();
    let card_key = ["tsps", "card-key", "e2e-tsp", "--file", "-"];
    let ran = cli.run_input(&card_key, jwk.as_bytes()).await.ok();
    assert!(ran.stdout.contains("published"), "{}", ran.stdout);
    cli.run_input(&card_key, b"{}").await.exits(4);
    let ran = cli.run_input(&card_key, b"{").await.exits(1);
    assert!(ran.stderr.contains("is not JSON"), "{}", ran.stderr);
    let to_nobody = ["tsps", "card-key", "no-such-tsp", "--file", "-"];
    cli.run_input(&to_nobody, jwk.as_bytes()).await.exits(3);

    let issuer = cli
        .json(&[
            "issuers",
            "put",
            "CLIISSUER1",
            "--name",
            "CLI Bank",
            "--tsp",
            "cli-tsp",
        ])
        .await;
    assert_eq!(
        issuer,
        json!({"issuerId": "CLIISSUER1", "name": "CLI Bank", "tspId": "cli-tsp"})
    );
    assert_eq!(cli.json(&["issuers", "get", "CLIISSUER1"]).await, issuer);
    cli.run(&["issuers", "get", "NOISSUER01"]).await.exits(3);
    let list = ["issuers", "list", "--limit", "10"];
    gated_page(cli, "/issuers?limit=10", &list, "issuerId", "CLIISSUER1").await;
    let ran = cli
        .run(&[
            "issuers",
            "put",
            "CLIISSUER1",
            "--name",
            "B",
            "--tsp",
            "no-such-tsp",
        ])
        .await;
    assert!(
        ran.exits(3).stderr.contains("NOT_FOUND"),
        "an unknown TSP is 404"
    );
    let ran = cli
        .run(&["issuers", "put", "SHORT", "--name", "B", "--tsp", "cli-tsp"])
        .await;
    assert!(ran.exits(4).stderr.contains("INVALID_REQUEST"));
}

/// A paged list the hub may not have yet: its first page through the CLI equals the API's, and
/// its table shows `expect`; without the route, the CLI exits with the code of the hub's status.
async fn gated_page(cli: &Cli<'_>, path: &str, args: &[&str], key: &str, expect: &str) {
    match cli.api(path).await {
        (200, api) => {
            let ids = |v: &Value| {
                let items = v["items"].as_array().unwrap().iter();
                items.map(|i| i[key].clone()).collect::<Vec<_>>()
            };
            let mut json = vec!["-o", "json"];
            json.extend_from_slice(args);
            let got = cli.run(&json).await.ok().json();
            assert_eq!(ids(&got), ids(&api));
            let table = cli.run(args).await.ok().stdout;
            assert!(table.contains(expect), "{table}");
        }
        (status, _) => {
            let ran = cli.run(args).await;
            assert_eq!(ran.code, code_of(status), "{}", ran.stderr);
        }
    }
}

/// The CLI's exit code for a hub's error status.
pub(super) fn code_of(status: u16) -> i32 {
    match status {
        401 | 403 => 5,
        404 => 3,
        400..=499 => 4,
        _ => 6,
    }
}

/// Defines and deploys v2 with a campaign over one ACTIVE token, follows it; the token's
/// commands. The token's id.
async fn profiles_campaigns_and_tokens(cli: &Cli<'_>, dir: &std::path::Path) -> String {
    let world = cli.world;
    let tokens = world.provision(1).await;
    let token = tokens[0].clone();

    let v2 = dir.join("v2.json");
    std::fs::write(&v2, tokenhub_sim::profiles::profile_v2().to_string()).unwrap();
    let v2s = v2.to_str().unwrap();
    let put = ["profiles", "put", ISSUER, "classic", "v2", "--file", v2s];
    let defined = cli.run(&put).await.ok().stdout;
    assert!(
        defined.contains("defined") && defined.contains("v2"),
        "{defined}"
    );
    let again = cli.json(&put).await;
    assert_eq!(again["version"], "v2");
    let (_, api) = cli
        .api(&format!("/issuers/{ISSUER}/products/classic/profiles/v2"))
        .await;
    assert_eq!(api["definition"], again["definition"]);
    let get = ["profiles", "get", ISSUER, "classic", "v2"];
    assert_eq!(cli.json(&get).await, api);
    cli.run(&["profiles", "get", ISSUER, "classic", "v9"])
        .await
        .exits(3);
    let list = ["profiles", "list", ISSUER, "classic", "--limit", "10"];
    let path = format!("/issuers/{ISSUER}/products/classic/profiles?limit=10");
    gated_page(cli, &path, &list, "version", "v2").await;
    let elements = |v: &Value| v["dataElements"].as_array().map(Vec::len);
    assert_eq!(
        elements(&again["definition"]),
        elements(&tokenhub_sim::profiles::profile_v2())
    );
    let v1 = dir.join("v1.json");
    std::fs::write(&v1, tokenhub_sim::profiles::profile_v1().to_string()).unwrap();
    let ran = cli
        .run(&[
            "profiles",
            "put",
            ISSUER,
            "classic",
            "v2",
            "--file",
            v1.to_str().unwrap(),
        ])
        .await;
    assert!(
        ran.exits(4).stderr.contains("CONFLICT"),
        "versions are immutable"
    );

    let deployed = cli
        .json(&[
            "profiles",
            "deploy",
            ISSUER,
            "classic",
            "v2",
            "--campaign",
            "--rate",
            "20",
        ])
        .await;
    assert_eq!(deployed["currentVersion"], "v2");
    assert_eq!(deployed["total"], 1);
    let campaign = deployed["campaignId"].as_str().unwrap().to_string();
    let watched = cli
        .run(&["campaigns", "status", &campaign, "--watch"])
        .await
        .ok();
    assert!(
        watched.stdout.contains("COMPLETED: done 1"),
        "{}",
        watched.stdout
    );
    let (_, api) = cli.api(&format!("/campaigns/{campaign}")).await;
    let mut got = cli.json(&["campaigns", "status", &campaign]).await;
    let mut api = api;
    // The estimate moves with the clock; the rest is the API's answer.
    for v in [&mut got, &mut api] {
        v.as_object_mut().unwrap().remove("estimatedEnd");
    }
    assert_eq!(got, api);
    let table = cli
        .run(&["campaign", "status", &campaign])
        .await
        .ok()
        .stdout;
    assert!(
        table.contains("COMPLETED") && table.contains(&campaign),
        "{table}"
    );
    gated_page(
        cli,
        "/campaigns",
        &["campaigns", "list"],
        "campaignId",
        &campaign,
    )
    .await;
    let ran = cli.run(&["campaigns", "pause", &campaign]).await;
    assert!(
        ran.exits(4).stderr.contains("CONFLICT"),
        "a finished campaign"
    );
    assert_eq!(
        cli.json(&["campaigns", "report", &campaign]).await,
        json!([])
    );
    let csv = cli
        .run(&["campaigns", "report", &campaign, "--format", "csv"])
        .await
        .ok();
    assert_eq!(csv.stdout.trim(), "tokenId,step,reason");

    let (_, api) = cli.api(&format!("/tokens/{token}")).await;
    assert_eq!(cli.json(&["tokens", "get", &token]).await, api);
    assert_eq!(api["profileVersion"], "v2");
    let issuer = api["issuerId"].as_str().unwrap();
    let list = ["tokens", "list", "--issuer", issuer, "--limit", "10"];
    let path = format!("/issuers/{issuer}/tokens?limit=10");
    gated_page(cli, &path, &list, "tokenId", &token).await;
    let table = cli.run(&["tokens", "get", &token]).await.ok().stdout;
    assert!(
        table.contains(&token) && table.contains("ACTIVE"),
        "{table}"
    );
    let history = cli.json(&["tokens", "history", &token]).await;
    assert_eq!(history, api["history"]);
    let table = cli.run(&["tokens", "history", &token]).await.ok().stdout;
    let first = api["history"][0]["event"].as_str().unwrap();
    assert!(table.contains(first), "{table}");
    let table = cli
        .run(&["tokens", "personalizations", &token])
        .await
        .ok()
        .stdout;
    assert!(
        table.contains("REPERSO") && table.contains("CONFIRMED"),
        "{table}"
    );

    let suspended = cli
        .json(&["tokens", "suspend", &token, "--reason", "card lost"])
        .await;
    assert_eq!(
        (suspended["tokenId"].as_str(), suspended["state"].as_str()),
        (Some(token.as_str()), Some("SUSPENDED"))
    );
    let table = cli.run(&["tokens", "resume", &token]).await.ok().stdout;
    assert!(table.contains("ACTIVE"), "{table}");
    world
        .wait_tsp_state(&token, "ACTIVE", Duration::from_secs(30))
        .await;

    let renewed = cli
        .json(&["cards", "renew", ISSUER, "card-0", "--expiry", "1231"])
        .await;
    assert_eq!(renewed, json!({"tokenIds": [token]}));
    let ran = cli
        .run(&[
            "cards",
            "replace",
            ISSUER,
            "no-card",
            "--last-digits",
            "4321",
        ])
        .await;
    ran.exits(3);

    let deleted = cli.json(&["tokens", "delete", &token]).await;
    assert_eq!(deleted["state"], "DELETED");
    let ran = cli.run(&["tokens", "resume", &token]).await.exits(4);
    assert!(ran.stderr.contains("CONFLICT"), "{}", ran.stderr);
    token
}

async fn requestors_and_notifications(cli: &mut Cli<'_>, token: &str) {
    let put = cli
        .json(&[
            "requestors",
            "put",
            "cli-psp",
            "--merchant-id",
            "M1",
            "--base-url",
            "http://127.0.0.1:9",
            "--api-key",
            "rq-api-key-0123456789",
            "--signing-secret",
            "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci1jbGk=",
        ])
        .await;
    assert_eq!(put["state"], "ENABLED");
    let list = ["requestors", "list", "--limit", "10"];
    gated_page(
        cli,
        "/token-requestors?limit=10",
        &list,
        "requestorId",
        "cli-psp",
    )
    .await;
    let (_, api) = cli.api("/token-requestors/cli-psp").await;
    assert_eq!(cli.json(&["requestors", "get", "cli-psp"]).await, api);
    let shown = cli.run(&["requestors", "get", "cli-psp"]).await.ok().stdout;
    assert!(
        shown.contains("cli-psp") && shown.contains("ENABLED"),
        "{shown}"
    );
    for s in &cli.secrets {
        assert!(!shown.contains(s.as_str()), "a requestor's secret shown");
    }
    let made = cli
        .run(&["requestors", "keys", "create", "cli-psp"])
        .await
        .ok();
    let key = made.stdout.trim().to_string();
    assert!(key.starts_with("trk_"), "{}", made.stdout);
    cli.secrets.push(key.clone());
    let said = made
        .stderr
        .lines()
        .find(|l| l.contains("created;"))
        .unwrap();
    let key_id = said.split_whitespace().nth(3).unwrap().to_string();
    let revoked = cli
        .run(&["requestors", "keys", "revoke", "cli-psp", &key_id])
        .await
        .ok();
    assert!(revoked.stdout.contains("revoked"), "{}", revoked.stdout);
    let (_, api) = cli.api("/token-requestors/cli-psp/api-keys").await;
    let keys = ["requestors", "keys", "list", "cli-psp"];
    assert_eq!(cli.json(&keys).await, api);
    assert!(api[0]["revokedMs"].is_i64(), "{api}");
    let table = cli.run(&keys).await.ok().stdout;
    assert!(table.contains(&key_id) && !table.contains(&key), "{table}");
    cli.run(&["requestors", "keys", "revoke", "cli-psp", "no-such-key"])
        .await
        .exits(3);
    let enabled = cli.run(&["requestors", "enable", "cli-psp"]).await.ok();
    assert!(enabled.stdout.contains("enabled"));
    cli.run(&["requestors", "get", "nobody"]).await.exits(3);

    let (_, api) = cli
        .api("/token-requestors/cli-psp/notifications?limit=100")
        .await;
    let listed = cli
        .json(&["notifications", "list", "--requestor", "cli-psp"])
        .await;
    assert_eq!(listed, api);
    let (_, api) = cli
        .api(&format!("/tokens/{token}/notifications?state=DEAD&limit=5"))
        .await;
    let listed = cli
        .json(&[
            "deliveries",
            "list",
            "--token",
            token,
            "--state",
            "DEAD",
            "--limit",
            "5",
        ])
        .await;
    assert_eq!(listed, api);
    let table = cli
        .run(&["notifications", "list", "--requestor", "cli-psp"])
        .await
        .ok()
        .stdout;
    assert!(table.contains("lastUpdateTimestamp"), "the header: {table}");
    let replayed = cli
        .run(&["notifications", "replay", "--all", "--requestor", "cli-psp"])
        .await;
    assert!(replayed.ok().stdout.contains("0 dead update(s) replayed"));
    let ran = cli.run(&["notifications", "show", "987654321"]).await;
    assert!(ran.exits(3).stderr.contains("NOT_FOUND"));
    cli.run(&[
        "notifications",
        "list",
        "--requestor",
        "cli-psp",
        "--state",
        "LOST",
    ])
    .await
    .exits(4);
}
