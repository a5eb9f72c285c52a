//! Signatures: the shared vectors, rotations, and every reason to refuse a delivery.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderValue;
use serde_json::Value;
use tokenhub_receiver::{
    sign, MemoryStore, Outcome, ReceiveError, Receiver, Signer, Verifier, VerifyError,
};

use crate::helpers::*;

/// The vectors: the shared file when the workspace sits in its project, else the crate's copy.
fn vectors() -> Vec<Value> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../../shared/vectors/webhooks.json");
    let path = if shared.exists() {
        shared
    } else {
        manifest.join("tests/vectors/webhooks.json")
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let vectors = v["vectors"].as_array().unwrap().clone();
    assert!(vectors.len() >= 2, "{}", path.display());
    vectors
}

#[test]
fn the_crate_copy_of_the_vectors_matches_the_shared_file() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../../shared/vectors/webhooks.json");
    let copy = manifest.join("tests/vectors/webhooks.json");
    let copy: Value = serde_json::from_str(&std::fs::read_to_string(copy).unwrap()).unwrap();
    if let Ok(text) = std::fs::read_to_string(shared) {
        let shared: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(shared["vectors"], copy["vectors"]);
    }
}

#[test]
fn every_vector_signs_and_verifies() {
    for v in vectors() {
        let secret = v["secret"].as_str().unwrap();
        let id = v["webhook-id"].as_str().unwrap();
        let ts_text = v["webhook-timestamp"].as_str().unwrap();
        let ts: i64 = ts_text.parse().unwrap();
        let body = v["body"].as_str().unwrap();
        let expected = v["webhook-signature"].as_str().unwrap();

        assert_eq!(sign(secret, id, ts, body.as_bytes()).unwrap(), expected);
        assert_eq!(
            Signer::new([secret])
                .unwrap()
                .signature_header(id, ts, body.as_bytes()),
            expected
        );

        let verifier = Verifier::new(API_KEY, [secret]).unwrap();
        let verified = verifier
            .verify_signature_at(id, ts_text, body.as_bytes(), expected, ts)
            .unwrap();
        assert_eq!(verified.webhook_id, id);
        assert_eq!(verified.timestamp, ts);

        // The whole header set, as a request carries it.
        let mut h = headers_at(id, ts, body, &[secret], API_KEY);
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(expected).unwrap(),
        );
        assert!(verifier.verify_at(&h, body.as_bytes(), ts + 299).is_ok());

        // A tampered body, another secret.
        let tampered = body.replacen('e', "f", 1);
        assert_eq!(
            verifier.verify_signature_at(id, ts_text, tampered.as_bytes(), expected, ts),
            Err(VerifyError::BadSignature)
        );
        let other = Verifier::new(API_KEY, [SECRET_B]).unwrap();
        assert_eq!(
            other.verify_signature_at(id, ts_text, body.as_bytes(), expected, ts),
            Err(VerifyError::BadSignature)
        );
    }
}

/// The official Standard Webhooks library, as a second opinion: it makes the vectors' signatures
/// and ours, and accepts a delivery our `Signer` signed with several secrets (a rotation).
#[test]
fn the_official_library_agrees_with_our_signatures() {
    for v in vectors() {
        let secret = v["secret"].as_str().unwrap();
        let id = v["webhook-id"].as_str().unwrap();
        let ts: i64 = v["webhook-timestamp"].as_str().unwrap().parse().unwrap();
        let body = v["body"].as_str().unwrap();
        let official = standardwebhooks::Webhook::new(secret).unwrap();
        assert_eq!(
            official.sign(id, ts, body.as_bytes()).unwrap(),
            sign(secret, id, ts, body.as_bytes()).unwrap()
        );
    }
    let body = body("T1", 0, Some("1111"));
    let h = headers_at("id-1", now(), &body, &[SECRET_A, SECRET_B], API_KEY);
    for secret in [SECRET_A, SECRET_B] {
        let official = standardwebhooks::Webhook::new(secret).unwrap();
        assert!(official.verify(body.as_bytes(), &h).is_ok());
        // And a tampered body is refused by both.
        let tampered = body.replacen('1', "2", 1);
        assert!(official.verify(tampered.as_bytes(), &h).is_err());
        let ours = Verifier::new(API_KEY, [secret]).unwrap();
        assert_eq!(
            ours.verify(&h, tampered.as_bytes()).err(),
            Some(VerifyError::BadSignature)
        );
    }
}

#[test]
fn the_token_update_vector_is_a_token_update() {
    let v = &vectors()[1];
    let update =
        tokenhub_receiver::TokenUpdate::from_json(v["body"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(update.token_id, "TKN0001");
    assert_eq!(
        update.last_update_timestamp_text,
        "2026-11-25T10:00:00.000Z"
    );
}

#[test]
fn rotation_accepts_a_signature_by_any_secret() {
    let both = Verifier::new(API_KEY, [SECRET_A, SECRET_B]).unwrap();
    let body = body("T1", 0, Some("1111"));
    let ts = now();
    for secrets in [
        &[SECRET_A][..],
        &[SECRET_B],
        &[SECRET_A, SECRET_B],
        &[SECRET_B, SECRET_A],
    ] {
        let h = headers_at("id-1", ts, &body, secrets, API_KEY);
        assert!(both.verify(&h, body.as_bytes()).is_ok());
    }
    // A sender signing with both while the receiver knows only one of them (either).
    let h = headers_at("id-1", ts, &body, &[SECRET_A, SECRET_B], API_KEY);
    for one in [SECRET_A, SECRET_B] {
        let verifier = Verifier::new(API_KEY, [one]).unwrap();
        assert!(verifier.verify(&h, body.as_bytes()).is_ok());
    }
    // Several entries of which only one is valid, with other versions and garbage around it.
    let valid = sign(SECRET_B, "id-1", ts, body.as_bytes()).unwrap();
    let wrong = sign(SECRET_A, "id-2", ts, body.as_bytes()).unwrap();
    let header = format!("v1,AAAA {wrong} v2,{} nonsense v1,!!! {valid}", &valid[3..]);
    let only_b = Verifier::new(API_KEY, [SECRET_B]).unwrap();
    assert!(only_b
        .verify_signature_at("id-1", &ts.to_string(), body.as_bytes(), &header, ts)
        .is_ok());
    // The same entry under another version does not count.
    let header = format!("v2,{}", &valid[3..]);
    assert_eq!(
        only_b.verify_signature_at("id-1", &ts.to_string(), body.as_bytes(), &header, ts),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn the_timestamp_tolerance_holds_both_ways_and_is_configurable() {
    let body = body("T1", 0, None);
    let ts = 1_764_064_800;
    let h = headers_at("id", ts, &body, &[SECRET_A], API_KEY);
    let v = verifier();
    assert!(v.verify_at(&h, body.as_bytes(), ts + 300).is_ok());
    assert!(v.verify_at(&h, body.as_bytes(), ts - 300).is_ok());
    assert_eq!(
        v.verify_at(&h, body.as_bytes(), ts + 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
    assert_eq!(
        v.verify_at(&h, body.as_bytes(), ts - 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
    let strict = verifier().with_tolerance(Duration::from_secs(10));
    assert!(strict.verify_at(&h, body.as_bytes(), ts + 10).is_ok());
    assert_eq!(
        strict.verify_at(&h, body.as_bytes(), ts + 11),
        Err(VerifyError::TimestampOutOfTolerance)
    );
}

#[tokio::test]
async fn refused_deliveries_are_401_or_400_change_nothing_and_burn_no_id() {
    let receiver = Receiver::new(verifier(), MemoryStore::new());
    let body = body("T1", 0, Some("1111"));
    let good = headers("id-1", &body);

    let mut cases = vec![
        // Wrong secret.
        (
            headers_at("id-1", now(), &body, &[SECRET_B], API_KEY),
            body.clone(),
            401,
        ),
        // Tampered body.
        (good.clone(), body.replace("4242", "4243"), 401),
        // Stale and future timestamps.
        (
            headers_at("id-1", now() - 600, &body, &[SECRET_A], API_KEY),
            body.clone(),
            401,
        ),
        (
            headers_at("id-1", now() + 600, &body, &[SECRET_A], API_KEY),
            body.clone(),
            401,
        ),
    ];
    // Wrong API key, no API key, another scheme.
    cases.push((
        headers_at("id-1", now(), &body, &[SECRET_A], "other-key"),
        body.clone(),
        401,
    ));
    let mut h = good.clone();
    h.remove("authorization");
    cases.push((h, body.clone(), 401));
    let mut h = good.clone();
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer psp-api-key-0001"),
    );
    cases.push((h, body.clone(), 401));
    // No signature.
    let mut h = good.clone();
    h.remove("webhook-signature");
    cases.push((h, body.clone(), 401));
    // Missing or malformed delivery headers.
    let mut h = good.clone();
    h.remove("webhook-id");
    cases.push((h, body.clone(), 400));
    let mut h = good.clone();
    h.remove("webhook-timestamp");
    cases.push((h, body.clone(), 400));
    let mut h = good.clone();
    h.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
    cases.push((h, body.clone(), 400));
    // A signed body that is not a token update.
    let junk = r#"{"tokenId":"T1"}"#;
    cases.push((headers("id-1", junk), junk.to_string(), 400));

    for (i, (h, b, status)) in cases.iter().enumerate() {
        let err = receiver.handle(h, b.as_bytes()).await.unwrap_err();
        assert_eq!(err.status().as_u16(), *status, "case {i}: {err}");
        let text = err.to_string();
        assert!(
            !text.contains(API_KEY) && !text.contains("whsec_"),
            "{text}"
        );
        if *status == 401 {
            assert!(matches!(err, ReceiveError::Unauthorized(_)));
        }
    }
    let stats = receiver.stats();
    assert_eq!(stats.rejected, cases.len() as u64);
    assert_eq!(stats.applied, 0);
    assert!(receiver.tokens().await.unwrap().is_empty());

    // The id was not remembered by the refused attempts: the genuine delivery applies.
    assert_eq!(
        receiver.handle(&good, body.as_bytes()).await.unwrap(),
        Outcome::Applied
    );
}
