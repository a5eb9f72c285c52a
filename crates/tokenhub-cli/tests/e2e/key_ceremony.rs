//! `tokenhub keys import` as custodians run it, on a real store: a key from components (each
//! checked against its KCV, the whole against its own), a key wrapped under a transport key
//! (RFC 3394), refusals that import nothing, and the development generator that says what it is.

use crate::harness::*;
use sqlx::Connection;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use tokenhub_crypto::ceremony;
use tokenhub_crypto::Algorithm;

const TSP: &str = "e2e-tsp";

/// `tokenhub ARGS --database-url URL`, with `stdin` written to its standard input.
fn run(args: &[&str], database_url: &str, stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(args)
        .args(["--database-url", database_url])
        .env("TOKENHUB_MASTER_KEY", MASTER_KEY)
        .env_remove("TOKENHUB_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// One component's file: `HEX KCV`.
fn component_file(dir: &Path, name: &str, hex: &str, kcv: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{hex} {kcv}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

/// The keys the store holds: (tsp, index, purpose, kcv); none when no command made the store
/// (a refused ceremony opens nothing).
async fn stored(database_url: &str) -> Vec<(String, String, String, String)> {
    let file = database_url.trim_start_matches("sqlite://");
    if !Path::new(file).exists() {
        return Vec::new();
    }
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.unwrap();
    sqlx::query_as(
        "SELECT tsp_id, key_index, purpose, kcv FROM shared_keys ORDER BY tsp_id, key_index",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_three_custodians_components_is_imported_only_when_every_kcv_holds() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let key: Vec<u8> = (1..=16).collect();
    let kcv = ceremony::kcv_hex(Algorithm::Tdes, &key).unwrap();
    let parts = ceremony::split(Algorithm::Tdes, &key, 3).unwrap();
    let hex = |i: usize| hex::encode_upper(&*parts[i].0);
    let first = component_file(dir.path(), "c1", &hex(0), &parts[0].1);
    let second = component_file(dir.path(), "c2", &hex(1), &parts[1].1);
    let third_line = format!("{} {}\n", hex(2), parts[2].1);
    let import = |second: &str, whole_kcv: &str| {
        let args = [
            "keys",
            "import",
            "--tsp",
            TSP,
            "--index",
            "KEK-C",
            "--algorithm",
            "3des",
            "--purpose",
            "kek",
            "--kcv",
            whole_kcv,
            "--component-file",
            first.as_str(),
            "--component-file",
            second,
            "--component-file",
            "-",
        ];
        run(&args, &url, &third_line)
    };

    // The second custodian's component with a KCV of another: refused, named, nothing stored.
    let wrong = component_file(dir.path(), "c2-wrong", &hex(1), "000000");
    let refused = import(&wrong, &kcv);
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        text(&refused.stderr).contains("component 2 does not match its check value"),
        "{refused:?}"
    );
    // Every component right, the whole key's KCV not the one the sheet gives: refused.
    let refused = import(&second, "ABCDEF");
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        text(&refused.stderr).contains("the combined key does not match"),
        "{refused:?}"
    );
    assert!(stored(&url).await.is_empty(), "nothing is imported");

    let imported = import(&second, &kcv);
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(
        text(&imported.stdout).trim(),
        format!("{TSP}/KEK-C: imported (KCV {kcv})")
    );
    assert_eq!(
        stored(&url).await,
        [(TSP.into(), "KEK-C".into(), "KEK".into(), kcv.clone())]
    );
    // Neither the key nor a component is in any output or in the database file.
    let db = std::fs::read(dir.path().join("hub.db")).unwrap();
    for secret in [key.clone(), parts[0].0.to_vec(), parts[2].0.to_vec()] {
        assert!(!contains(&db, &secret));
        let hex = hex::encode_upper(&secret);
        for out in [&imported.stdout, &imported.stderr] {
            assert!(!text(out).to_uppercase().contains(&hex));
        }
    }
    // The hub opens the store and unwraps the key (its KCV checked again); retiring it is
    // audited on the store.
    let retired = tokenhub(&["keys", "retire", "--tsp", TSP, "--index", "KEK-C"], &url);
    assert!(retired.status.success(), "{retired:?}");
    assert_eq!(
        text(&retired.stdout).trim(),
        format!("{TSP}/KEK-C: retired")
    );
    let missing = tokenhub(
        &["keys", "retire", "--tsp", "other", "--index", "KEK-C"],
        &url,
    );
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_wrapped_under_a_transport_key_is_imported_when_the_wrap_and_kcvs_hold() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    // An AES-256 transport key from two custodians; the DEK wrapped under it (RFC 3394).
    let transport: Vec<u8> = (100..132).collect();
    let transport_kcv = ceremony::kcv_hex(Algorithm::Aes256, &transport).unwrap();
    let parts = ceremony::split(Algorithm::Aes256, &transport, 2).unwrap();
    let files: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, (c, k))| component_file(dir.path(), &format!("t{i}"), &hex::encode(&**c), k))
        .collect();
    let key: Vec<u8> = (7..23).collect();
    let kcv = ceremony::kcv_hex(Algorithm::Aes128, &key).unwrap();
    let wrapped = hex::encode_upper(ceremony::wrap(&transport, &key).unwrap());
    let import = |wrapped: &str, transport_kcv: &str| {
        run(
            &[
                "keys",
                "import",
                "--tsp",
                TSP,
                "--index",
                "DEK-W",
                "--algorithm",
                "aes128",
                "--purpose",
                "dek",
                "--kcv",
                &kcv,
                "--wrapped",
                wrapped,
                "--transport-component-file",
                &files[0],
                "--transport-component-file",
                &files[1],
                "--transport-kcv",
                transport_kcv,
            ],
            &url,
            "",
        )
    };
    let refused = import(&wrapped, "000000");
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        text(&refused.stderr).contains("the transport key"),
        "{refused:?}"
    );
    let mut altered = hex::decode(&wrapped).unwrap();
    altered[3] ^= 0x40;
    let refused = import(&hex::encode(altered), &transport_kcv);
    assert_eq!(refused.status.code(), Some(4), "{refused:?}");
    assert!(
        text(&refused.stderr).contains("does not unwrap"),
        "{refused:?}"
    );
    assert!(stored(&url).await.is_empty(), "nothing is imported");

    let imported = import(&wrapped, &transport_kcv);
    assert!(imported.status.success(), "{imported:?}");
    assert_eq!(
        stored(&url).await,
        [(TSP.into(), "DEK-W".into(), "DEK".into(), kcv.clone())]
    );
    let db = std::fs::read(dir.path().join("hub.db")).unwrap();
    assert!(!contains(&db, &key) && !contains(&db, &transport));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_development_generator_writes_clear_keys_and_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let help = run(&["keys", "dev-generate", "--help"], &url, "");
    assert!(text(&help.stdout).contains("DEVELOPMENT ONLY"), "{help:?}");
    let file = dir.path().join("dev-keys.json");
    let made = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(["keys", "dev-generate", "--out", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    assert!(text(&made.stdout).contains("DEVELOPMENT ONLY"), "{made:?}");
    // The old name, which wrote the same file without saying so, is gone.
    let old = Command::new(env!("CARGO_BIN_EXE_tokenhub"))
        .args(["keys", "generate", "--out", "x.json"])
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(2), "{old:?}");
    // A key is not taken whole on the command line any more.
    let whole = run(
        &[
            "keys",
            "import",
            "--tsp",
            TSP,
            "--index",
            "K",
            "--algorithm",
            "aes128",
            "--purpose",
            "kek",
            "--kcv",
            "000000",
            "--hex",
            "00112233445566778899AABBCCDDEEFF",
        ],
        &url,
        "",
    );
    assert_eq!(whole.status.code(), Some(2), "{whole:?}");
    // The development file imports for its TSP (the demo's path).
    let imported = tokenhub(
        &[
            "keys",
            "import",
            "--tsp",
            TSP,
            "--file",
            file.to_str().unwrap(),
        ],
        &url,
    );
    assert!(imported.status.success(), "{imported:?}");
    let purposes: Vec<String> = stored(&url).await.into_iter().map(|k| k.2).collect();
    assert_eq!(purposes, ["DEK", "KEK"]);
}
