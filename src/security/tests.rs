//! Keys, key files and the ZAP codec.

use std::os::unix::fs::PermissionsExt;

use super::zap;
use super::*;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bilateral-keys-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_generated_pair_round_trips_through_z85() {
    let pair = Keypair::generate().unwrap();
    let public = pair.public().to_z85();
    assert_eq!(public.len(), 40);
    let again = Keypair::from_z85(&public, &pair.secret_z85()).unwrap();
    assert_eq!(again.public(), pair.public());
    assert_eq!(
        Keypair::from_secret_z85(&pair.secret_z85())
            .unwrap()
            .public(),
        pair.public()
    );
    assert_eq!(public.parse::<PublicKey>().unwrap(), *pair.public());
    assert!(
        !format!("{pair:?}").contains(&pair.secret_z85()),
        "Debug must not show the secret"
    );
}

#[test]
fn mismatched_or_malformed_keys_are_refused() {
    let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    assert!(matches!(
        Keypair::from_z85(&b.public().to_z85(), &a.secret_z85()),
        Err(KeyError::Mismatch(_))
    ));
    assert!(matches!(
        PublicKey::from_z85("short"),
        Err(KeyError::BadZ85(_))
    ));
    assert!(matches!(
        PublicKey::from_z85(&"\"".repeat(40)),
        Err(KeyError::BadZ85(_))
    ));
    assert!(Keypair::from_secret_z85("nope").is_err());
}

#[test]
fn saved_secret_files_are_owner_only_and_load_back() {
    let dir = temp_dir("save");
    let pair = Keypair::generate().unwrap();
    let secret_file = pair.save(dir.join("node.key")).unwrap();
    assert_eq!(secret_file, dir.join("node.key_secret"));
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let public_text = std::fs::read_to_string(dir.join("node.key")).unwrap();
    assert!(public_text.contains(&pair.public().to_z85()));
    assert!(
        !public_text.contains(&pair.secret_z85()),
        "the public file holds no secret"
    );
    let loaded = Keypair::load(&secret_file).unwrap();
    assert_eq!(loaded.public(), pair.public());
    assert_eq!(
        load_public_key(dir.join("node.key")).unwrap(),
        *pair.public()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secret_file_others_can_read_is_refused_with_a_clear_error() {
    let dir = temp_dir("perms");
    let pair = Keypair::generate().unwrap();
    let secret_file = pair.save(dir.join("node.key")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Keypair::load(&secret_file).unwrap_err();
    assert!(
        matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
    // Saving over it refuses too, rather than writing a secret into a readable file.
    assert!(matches!(
        pair.save(dir.join("node.key")),
        Err(KeyError::InsecurePermissions { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_lists_skip_comments_and_reject_garbage() {
    let dir = temp_dir("list");
    let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    let path = dir.join("allowed");
    std::fs::write(
        &path,
        format!("# peers\n{}\n\n  {}  \n", a.public(), b.public()),
    )
    .unwrap();
    assert_eq!(
        read_key_list(&path).unwrap(),
        vec![*a.public(), *b.public()]
    );
    std::fs::write(&path, "not a key\n").unwrap();
    assert!(read_key_list(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_lists_take_public_certificates_and_refuse_secrets() {
    let dir = temp_dir("certs");
    let (a, b) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    a.save(dir.join("a.key")).unwrap();
    b.save(dir.join("b.key")).unwrap();
    // `cat a.key b.key > allowed`, with a bare key after them.
    let c = Keypair::generate().unwrap();
    let mut list = std::fs::read_to_string(dir.join("a.key")).unwrap();
    list += &std::fs::read_to_string(dir.join("b.key")).unwrap();
    list += &format!("{}\n", c.public());
    let path = dir.join("allowed");
    std::fs::write(&path, &list).unwrap();
    assert_eq!(
        read_key_list(&path).unwrap(),
        vec![*a.public(), *b.public(), *c.public()]
    );
    // A secret certificate in the list is a mistake worth stopping for.
    let secret = std::fs::read_to_string(dir.join("a.key_secret")).unwrap();
    std::fs::write(&path, list + &secret).unwrap();
    assert!(matches!(
        read_key_list(&path),
        Err(KeyError::SecretInList { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn zap_requests_parse_and_replies_echo_the_request_id() {
    let key = *Keypair::generate().unwrap().public();
    let frames: Vec<&[u8]> = vec![
        b"1.0",
        b"\x01\x02",
        b"bilateral",
        b"127.0.0.1",
        b"",
        b"CURVE",
        key.as_bytes(),
    ];
    let request = zap::parse(&frames).unwrap();
    assert_eq!(
        (
            request.request_id.as_slice(),
            request.address.as_str(),
            request.key
        ),
        (&[1u8, 2][..], "127.0.0.1", key)
    );
    let reply = zap::reply(&request.request_id, 200, "OK", &key.to_z85());
    assert_eq!(reply.len(), 6);
    assert_eq!(
        (
            reply[1].as_slice(),
            reply[2].as_slice(),
            reply[4].as_slice()
        ),
        (&[1u8, 2][..], &b"200"[..], key.to_z85().as_bytes())
    );
    // Not CURVE, wrong version, truncated key: refused as malformed.
    let mut bad = frames.clone();
    bad[5] = b"PLAIN";
    assert!(zap::parse(&bad).is_err());
    bad = frames.clone();
    bad[0] = b"2.0";
    assert!(zap::parse(&bad).is_err());
    bad = frames.clone();
    bad[6] = &key.as_bytes()[..31];
    assert!(zap::parse(&bad).is_err());
    assert!(zap::parse(&frames[..3]).is_err());
}
