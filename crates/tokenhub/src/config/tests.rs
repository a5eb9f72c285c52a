use super::*;

#[test]
fn flags_beat_the_file_which_beats_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9999\"\nperso_ttl = 30\nmaster_key = \"ab\"\n\
         requestor_tsp_budget = \"5s\"\n",
    )
    .unwrap();
    let mut args = ServeArgs::default();
    args.store.config = Some(file);
    let c = Config::load_with_env(&args, |_| None).unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert_eq!(c.perso_ttl, Duration::from_secs(30));
    assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
    assert_eq!(c.master_key.as_deref(), Some("ab"));
    assert_eq!(c.requestor_tsp_budget, Duration::from_secs(5));
    args.perso_ttl = Some(5);
    let c = Config::load_with_env(&args, |k| (k == "TOKENHUB_MASTER_KEY").then(|| "cd".into()))
        .unwrap();
    assert_eq!(c.perso_ttl, Duration::from_secs(5));
    assert_eq!(c.master_key.as_deref(), Some("cd"));
}

#[test]
fn schedules_and_allow_lists_parse_or_say_why_not() {
    assert_eq!(
        parse_schedule("1s, 2s,500ms").unwrap(),
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_millis(500)
        ]
    );
    assert_eq!(NotifySettings::default().retry_schedule.len(), 7);
    assert!(parse_schedule("1s,soon").unwrap_err().contains("soon"));
    assert!(parse_schedule("0s").is_err());
    let nets = parse_cidrs("127.0.0.0/8,::1,10.1.2.3").unwrap();
    assert_eq!(nets.len(), 3);
    assert!(nets[1].contains(&"::1".parse::<std::net::IpAddr>().unwrap()));
    assert!(parse_cidrs("localhost").is_err());
    assert_eq!(parse_budget(" 500ms"), Ok(Duration::from_millis(500)));
    for refused in ["0s", "99ms", "61s", "soon"] {
        assert!(parse_budget(refused).is_err(), "{refused}");
    }
}

#[test]
fn plain_http_is_refused_and_proxies_ignored_unless_configured() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }
    use clap::Parser;
    let none = Config::load_with_env(&ServeArgs::default(), |_| None).unwrap();
    assert_eq!(none.outbound, OutboundSettings::default());
    assert!(!none.outbound.allow_plain_http && none.outbound.proxy.is_none());
    let cli = Cli::try_parse_from([
        "t",
        "--allow-plain-http-endpoints",
        "--outbound-proxy",
        "http://proxy.internal:3128",
    ])
    .unwrap();
    let c = Config::load_with_env(&cli.serve, |_| None).unwrap();
    assert!(c.outbound.allow_plain_http);
    assert_eq!(
        c.outbound.proxy.as_deref(),
        Some("http://proxy.internal:3128")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(&file, "allow_plain_http_endpoints = true\n").unwrap();
    let mut args = ServeArgs::default();
    args.store.config = Some(file);
    assert!(
        Config::load_with_env(&args, |_| None)
            .unwrap()
            .outbound
            .allow_plain_http
    );
    args.outbound_proxy = Some("not a proxy".into());
    assert!(Config::load_with_env(&args, |_| None).is_err());
}

#[test]
fn the_key_file_sits_beside_the_database() {
    let c = Config::for_database("sqlite://data/tokenhub.db");
    assert_eq!(c.master_key_file().unwrap(), Path::new("data/master.key"));
    assert!(Config::for_database("postgres://u@h/db")
        .master_key_file()
        .is_none());
}

#[test]
fn three_listeners_need_addresses_and_certificates_unless_plain() {
    let mut args = ServeArgs::default();
    args.tls.tsp_listen = Some("127.0.0.1:1".parse().unwrap());
    let e = Config::load_with_env(&args, |_| None).err().unwrap();
    assert!(e.to_string().contains("certificate and key"), "{e}");
    args.tls.tls_cert = Some("hub.crt".into());
    args.tls.tls_key = Some("hub.key".into());
    let e = Config::load_with_env(&args, |_| None).err().unwrap();
    assert!(
        e.to_string().contains("wallet listener has no address"),
        "{e}"
    );
    args.tls.wallet_listen = Some("127.0.0.1:2".parse().unwrap());
    args.tls.admin_listen = Some("127.0.0.1:3".parse().unwrap());
    args.tls.plain_listeners = Some("admin".into());
    let l = Config::load_with_env(&args, |_| None)
        .unwrap()
        .listeners
        .unwrap();
    assert_eq!(l.admin.security, ListenerSecurity::Plain);
    assert!(matches!(l.tsp.security, ListenerSecurity::Tls { .. }));
    args.tls.plain_listeners = Some("console".into());
    assert!(Config::load_with_env(&args, |_| None).is_err());
    assert!(Config::load_with_env(&ServeArgs::default(), |_| None)
        .unwrap()
        .listeners
        .is_none());
}

#[test]
fn secrets_do_not_show_in_debug() {
    let mut c = Config::for_database("postgres://user:hunter2@localhost/db");
    c.admin_token = Some("tok-secret".into());
    let s = format!("{c:?}");
    assert!(!s.contains("hunter2") && !s.contains("tok-secret"), "{s}");
}
