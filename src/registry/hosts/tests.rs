use std::path::Path;

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn reference(input: &str) -> Reference {
    input.parse().expect("a valid reference")
}

/// Writes `text` as `DIR/NAME/hosts.toml`.
fn write_hosts(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(name))?;
    std::fs::write(dir.join(name).join("hosts.toml"), text)
}

fn urls(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints.iter().map(|e| e.url("/v2/")).collect()
}

#[test]
fn parses_mirror_arguments() {
    let cases = [
        (
            "https://mirror.example",
            Some(("docker.io", "https://mirror.example")),
        ),
        (
            "127.0.0.1:5000=http://127.0.0.1:6000",
            Some(("127.0.0.1:5000", "http://127.0.0.1:6000")),
        ),
        (
            "index.docker.io=mirror.example:5000",
            Some(("docker.io", "mirror.example:5000")),
        ),
        (
            "Ghcr.IO=https://m.example/ghcr",
            Some(("ghcr.io", "https://m.example/ghcr")),
        ),
        ("ftp://mirror.example", None),
        ("=https://mirror.example", None),
        ("docker.io=", None),
        ("https://user:secret@mirror.example", None),
    ];
    for (input, expected) in cases {
        let parsed = input.parse::<Mirror>().ok();
        let parsed = parsed
            .as_ref()
            .map(|m| (m.registry.as_str(), m.url.as_str()));
        assert_eq!(parsed, expected, "{input}");
    }
}

#[test]
fn chooses_schemes_by_url_then_insecure_then_loopback() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_hosts(
        dir.path(),
        "127.0.0.1:5001",
        r#"server = "https://127.0.0.1:5001""#,
    )?;
    write_hosts(dir.path(), "127.0.0.1_5002_", r#"ca = "ca.pem""#)?;
    write_hosts(
        dir.path(),
        "secure.example",
        r#"server = "http://secure.example""#,
    )?;
    let hosts = Hosts::new(vec![dir.path().to_path_buf()]);
    let insecure = ["build.internal:5000".to_string()];
    let cases = [
        ("127.0.0.1:5000/app", "http://127.0.0.1:5000/v2/"),
        ("127.0.0.1:5001/app", "https://127.0.0.1:5001/v2/"),
        ("127.0.0.1:5002/app", "https://127.0.0.1:5002/v2/"),
        ("build.internal:5000/app", "http://build.internal:5000/v2/"),
        ("secure.example/app", "http://secure.example/v2/"),
        ("ghcr.io/org/app", "https://ghcr.io/v2/"),
        ("alpine", "https://registry-1.docker.io/v2/"),
    ];
    for (input, expected) in cases {
        let route = hosts.route(&reference(input), &insecure)?;
        assert_eq!(route.upstream.url("/v2/"), expected, "{input}");
    }
    Ok(())
}

#[test]
fn lists_mirrors_in_order_before_the_upstream() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_hosts(
        dir.path(),
        "docker.io",
        r#"
        server = "https://registry-1.docker.io"
        [host."https://first.example"]
          capabilities = ["pull", "resolve"]
        [host."http://second.example:5000/cache/"]
          capabilities = ["pull"]
        [host."https://flat.example/api"]
          capabilities = ["pull"]
          override_path = true
        "#,
    )?;
    let hosts = Hosts::new(vec![dir.path().to_path_buf()]).with_mirrors(vec![
        "https://flag.example".parse()?,
        "ghcr.io=https://other.example".parse()?,
    ]);
    let route = hosts.route(&reference("alpine"), &[])?;
    assert_eq!(
        urls(&route.mirrors),
        [
            "https://flag.example/v2/?ns=docker.io",
            "https://first.example/v2/?ns=docker.io",
            "http://second.example:5000/cache/v2/?ns=docker.io",
            "https://flat.example/api/?ns=docker.io",
        ]
    );
    assert_eq!(
        route.upstream.url("/v2/"),
        "https://registry-1.docker.io/v2/"
    );
    assert_eq!(route.upstream.name, "docker.io", "the registry's own name");
    assert_eq!(route.mirrors[1].name, "first.example");

    let by_capability = |capability| -> Vec<String> {
        route
            .mirrors_for(capability)
            .map(|m| m.name.clone())
            .collect()
    };
    assert_eq!(
        by_capability(Capability::Resolve),
        ["flag.example", "first.example"]
    );
    assert_eq!(
        by_capability(Capability::Pull),
        [
            "flag.example",
            "first.example",
            "second.example:5000",
            "flat.example"
        ]
    );
    Ok(())
}

#[test]
fn finds_host_directories_in_order_before_defaults() -> TestResult {
    let (user, system) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mirror = |url: &str| format!("[host.\"{url}\"]\n");
    write_hosts(
        user.path(),
        "_default",
        &mirror("https://user-default.example"),
    )?;
    write_hosts(user.path(), "a.example", &mirror("https://user-a.example"))?;
    write_hosts(
        system.path(),
        "a.example",
        &mirror("https://system-a.example"),
    )?;
    write_hosts(
        system.path(),
        "b.example",
        &mirror("https://system-b.example"),
    )?;
    write_hosts(
        system.path(),
        "c.example:5000",
        &mirror("https://colon.example"),
    )?;
    write_hosts(
        system.path(),
        "c.example_5000_",
        &mirror("https://underscore.example"),
    )?;
    let hosts = Hosts::new(vec![user.path().to_path_buf(), system.path().to_path_buf()]);
    let cases = [
        ("a.example/app", "user-a.example"),
        ("b.example/app", "system-b.example"),
        ("c.example:5000/app", "underscore.example"),
        ("d.example/app", "user-default.example"),
    ];
    for (input, mirror) in cases {
        let route = hosts.route(&reference(input), &[])?;
        let names: Vec<&str> = route.mirrors.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [mirror], "{input}");
    }
    assert!(
        Hosts::default()
            .route(&reference("a.example/app"), &[])?
            .mirrors
            .is_empty()
    );
    Ok(())
}

#[test]
fn carries_tls_and_headers_to_endpoints() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_hosts(
        dir.path(),
        "reg.example",
        r#"
        client = [["c.cert", "c.key"], ["d.cert", "d.key"]]
        [host."mirror.example:5000"]
          ca = "/etc/mirror-ca.pem"
          skip_verify = true
          dial_timeout = "2s"
          [host."mirror.example:5000".header]
            x-mirror = "yes"
        "#,
    )?;
    std::fs::write(dir.path().join("reg.example/ca.crt"), "")?;
    let hosts = Hosts::new(vec![dir.path().to_path_buf()]);
    let route = hosts.route(&reference("reg.example/app"), &[])?;
    let base = dir.path().join("reg.example");
    assert_eq!(
        route.upstream.tls,
        TlsSetup {
            ca: vec![base.join("ca.crt")],
            client: Some((base.join("c.cert"), Some(base.join("c.key")))),
            skip_verify: false,
        }
    );
    let mirror = &route.mirrors[0];
    assert_eq!(mirror.scheme, Scheme::Https, "TLS material means HTTPS");
    assert!(mirror.tls.skip_verify);
    assert_eq!(mirror.tls.ca, [PathBuf::from("/etc/mirror-ca.pem")]);
    assert_eq!(mirror.connect_timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        mirror.headers,
        [("x-mirror".to_string(), "yes".to_string())]
    );
    Ok(())
}

#[test]
fn gives_command_line_mirrors_their_own_host_directory() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("mirror.example_5000_"))?;
    std::fs::write(dir.path().join("mirror.example_5000_/ca.crt"), "")?;
    let hosts = Hosts::new(vec![dir.path().to_path_buf()])
        .with_mirrors(vec!["mirror.example:5000".parse()?]);
    let route = hosts.route(&reference("alpine"), &[])?;
    let mirror = &route.mirrors[0];
    assert_eq!(mirror.base_url(), "https://mirror.example:5000");
    assert_eq!(
        mirror.tls.ca,
        [dir.path().join("mirror.example_5000_/ca.crt")]
    );
    Ok(())
}

#[test]
fn leaves_out_a_mirror_that_is_the_upstream() -> TestResult {
    let hosts =
        Hosts::default().with_mirrors(vec!["127.0.0.1:5000=http://127.0.0.1:5000".parse()?]);
    let route = hosts.route(&reference("127.0.0.1:5000/app"), &[])?;
    assert!(route.mirrors.is_empty());
    Ok(())
}

#[test]
fn reports_malformed_host_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_hosts(dir.path(), "reg.example", r#"server = "ftp://reg.example""#)?;
    write_hosts(
        dir.path(),
        "bad.example",
        "[host.\"https://m\"]\ncapabilities = [\"x\"]\n",
    )?;
    let hosts = Hosts::new(vec![dir.path().to_path_buf()]);
    let error = hosts
        .route(&reference("reg.example/app"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`server` configured for `reg.example`"),
        "{error}"
    );
    let error = hosts
        .route(&reference("bad.example/app"), &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown capability `x`"), "{error}");
    Ok(())
}

#[test]
fn searches_the_environments_directory_first() {
    let dirs = default_dirs();
    let tail: Vec<PathBuf> = ["/etc/containerd/certs.d", "/etc/docker/certs.d"]
        .map(PathBuf::from)
        .to_vec();
    assert!(dirs.ends_with(&tail), "{dirs:?}");
    assert!(dirs.len() <= 3, "{dirs:?}");
}
