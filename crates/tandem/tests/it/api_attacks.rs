//! The management API and user services as an attacker finds them: tokens in the wrong
//! form, routes and methods that do not exist, names that one method refused and another
//! took — each answered with a JSON error in words, never an empty body or Rust's debug
//! text.

use crate::lab::Lab;

const FE: &str = "pool1-fe1.contoso.com";

/// One HTTP exchange as it happens on the wire: status, `Allow` and the body as text.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) allow: Option<String>,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` of an `ErrorBody`, checked to be words: no debug text of Rust values.
    pub(crate) fn error(&self) -> String {
        let body = self.json();
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {body}"))
            .to_string();
        for debug in ["Some(", "None", "\\\"", "\\u{", "Err(", "Ok("] {
            assert!(!error.contains(debug), "debug text {debug} in {error}");
        }
        error
    }
}

/// `method url` with these headers and body, through a client that trusts the lab's CA.
pub(crate) fn call(
    lab: &Lab,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = lab.http().build().unwrap();
        let mut request = client.request(method.parse().unwrap(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            allow: response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: response.text().await.unwrap(),
        }
    })
}

/// `method path` sent as written (no client tidies `..` or `%2E%2E` away), over TLS to
/// `base` (`https://address:port`), trusting the lab's CA; the status and the body.
pub(crate) fn raw(lab: &Lab, base: &str, method: &str, path: &str, auth: &str) -> Answer {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("https://");
    let host = address.rsplit_once(':').unwrap().0.to_string();
    let roots =
        pki::Roots::from_pem_file(&std::path::Path::new(lab.dir()).join("pki/ca.pem")).unwrap();
    let config = pki::client_config(&roots, None);
    let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
    let connection = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = std::net::TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let body = if method == "PUT" { "{}" } else { "" };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let allow = head
        .lines()
        .find_map(|l| l.strip_prefix("allow: ").map(str::to_string));
    Answer {
        status,
        allow,
        body: body.to_string(),
    }
}

/// `https://address:port` of a server's management API.
pub(crate) fn management(lab: &Lab, fqdn: &str) -> String {
    let s = lab.server(fqdn);
    format!(
        "https://{}:{}",
        s["address"].as_str().unwrap(),
        s["management_port"]
    )
}

const GET_USERS: &str = r#"{"cmdlet":"Get-CsUser","parameters":{}}"#;

#[test]
fn only_bearer_tokens_pass_every_refusal_is_a_json_error_in_words_and_names_are_checked_alike() {
    let lab = Lab::up_with(&["--users", "2"]);
    bearer_tokens_and_json_errors(&lab);
    user_services_refuse_a_name_the_same_way_for_every_method(&lab);
    every_described_route_is_served(&lab);
    // Last: it locks a user out from this address.
    guessing_on_user_services_is_locked_out_and_says_nothing_of_who_exists(&lab);
}

/// `https://address:port` of the user services of a Front End of `user`'s home pool.
fn home_user_services(lab: &Lab, user: &serde_json::Value) -> String {
    let home = user["home_pool"].as_str().unwrap();
    let server = lab
        .servers()
        .into_iter()
        .find(|s| s["pool"] == home)
        .unwrap();
    Lab::user_services(&server)
}

/// Basic authentication on user services counts failures as the registrar does: after a
/// few wrong passwords from one address the right one is refused too, and an unknown user
/// gets the same answer as a wrong password.
fn guessing_on_user_services_is_locked_out_and_says_nothing_of_who_exists(lab: &Lab) {
    use base64::Engine as _;
    let user = lab.users()[1].clone();
    let sip = user["sip_address"].as_str().unwrap();
    let base = home_user_services(lab, &user);
    let basic = |name: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
        )
    };
    let name = sip.trim_start_matches("sip:");
    let domain = name.split('@').nth(1).unwrap();
    let unknown = raw(
        lab,
        &base,
        "GET",
        "/users/v1/contacts",
        &basic(&format!("nobody@{domain}"), "x"),
    );
    let wrong = raw(
        lab,
        &base,
        "GET",
        "/users/v1/contacts",
        &basic(name, "wrong"),
    );
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert_eq!(unknown.error(), wrong.error());
    for _ in 0..5 {
        let a = raw(
            lab,
            &base,
            "GET",
            "/users/v1/contacts",
            &basic(name, "wrong"),
        );
        assert!(matches!(a.status, 401 | 403), "{}", a.body);
    }
    let right = raw(
        lab,
        &base,
        "GET",
        "/users/v1/contacts",
        &basic(name, user["password"].as_str().unwrap()),
    );
    assert_eq!(right.status, 403, "{}", right.body);
    assert!(
        right.error().contains("too many failed sign-ins"),
        "{}",
        right.body
    );
}

/// Every operation the served documents describe reaches a route: never the fallback's
/// 404 or a 405 (the documents are made from the routers, and the unit tests compare them
/// with the routes' names; this checks the live servers).
fn every_described_route_is_served(lab: &Lab) {
    let fe = lab.server(FE);
    let bearer = format!("Bearer {}", lab.admin_token());
    for base in [management(lab, FE), Lab::user_services(&fe)] {
        let doc = call(lab, "GET", &format!("{base}/openapi.json"), &[], None).json();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10, "{base}: {}", paths.len());
        for (path, item) in paths {
            let concrete = path
                .replace("{contact}", "sip:nobody@contoso.com")
                .replace("{id}", "m1")
                .replace("{file}", "f1")
                .replace("{setting}", "s1");
            for method in item.as_object().unwrap().keys() {
                let method = method.to_uppercase();
                let a = raw(lab, &base, &method, &concrete, &bearer);
                assert_ne!(a.status, 405, "{method} {path} at {base}: {}", a.body);
                assert!(
                    !a.body.starts_with(r#"{"error":"no such"#),
                    "{method} {path} at {base} is not served: {}",
                    a.body
                );
            }
        }
    }
}

fn bearer_tokens_and_json_errors(lab: &Lab) {
    let api = management(lab, FE);
    let invoke = format!("{api}/api/v1/invoke");
    let token = lab.admin_token();

    // The token alone, another scheme, or nothing: 401 naming the Bearer form.
    for header in [
        token.clone(),
        format!("Basic {token}"),
        format!("Token {token}"),
    ] {
        let a = call(
            lab,
            "POST",
            &invoke,
            &[("authorization", &header)],
            Some(GET_USERS),
        );
        assert_eq!(a.status, 401, "{header}: {}", a.body);
        assert!(a.error().contains("Bearer <token>"), "{}", a.body);
    }
    let a = call(lab, "POST", &invoke, &[], Some(GET_USERS));
    assert_eq!(a.status, 401);
    assert!(a.error().contains("Bearer"));
    // The scheme's name is case-insensitive (RFC 7235).
    let a = call(
        lab,
        "POST",
        &invoke,
        &[("authorization", &format!("bearer {token}"))],
        Some(GET_USERS),
    );
    assert_eq!(a.status, 200, "{}", a.body);

    // An unknown route and a wrong method: JSON errors, with the methods the route takes.
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let a = call(lab, "GET", &format!("{api}/api/v1/nothing"), &auth, None);
    assert_eq!(a.status, 404);
    assert!(a.error().contains("openapi.json"));
    let a = call(lab, "GET", &invoke, &auth, None);
    assert_eq!(a.status, 405, "{}", a.body);
    assert_eq!(a.allow.as_deref(), Some("POST"));
    assert!(a.error().contains("does not take GET"));
    let a = call(lab, "DELETE", &format!("{api}/health"), &[], None);
    assert_eq!(a.status, 405, "{}", a.body);
    a.error();

    // A refusal that names what the caller sent quotes it in words.
    let a = call(
        lab,
        "POST",
        &invoke,
        &auth,
        Some(
            r#"{"cmdlet":"Set-CsBackupServiceConfiguration","parameters":{"Identity":"x\"yz","SyncInterval":"00:02:00"}}"#,
        ),
    );
    assert!(a.status >= 400, "{}", a.body);
    assert!(a.error().contains("'x\"yz'"), "{}", a.body);
    let a = call(
        lab,
        "POST",
        &invoke,
        &auth,
        Some(r#"{"cmdlet":"Get-CsUser","parameters":{"Identity":"no\"body"}}"#),
    );
    assert_eq!(a.status, 404, "{}", a.body);
    assert!(a.error().contains("'no\"body'"), "{}", a.body);
}

fn user_services_refuse_a_name_the_same_way_for_every_method(lab: &Lab) {
    let user = lab.users()[0].clone();
    let sip = user["sip_address"].as_str().unwrap();
    let base = home_user_services(lab, &user);
    let basic = {
        use base64::Engine as _;
        // The user name is the SIP address without `sip:` (Basic splits at the first colon).
        let name = sip.trim_start_matches("sip:");
        let pair = format!("{name}:{}", user["password"].as_str().unwrap());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let auth = [("authorization", basic.as_str())];
    // `..` and friends, sent as written: every method of the route refuses them alike.
    for path in [
        "contacts/..",
        "contacts/%2E%2E",
        "contacts/sip%3A..%2F..",
        "contacts/a%20b",
        "meetings/..",
        "meetings/m1/content/..",
        "meetings/m1/content/%2E",
        "settings/.",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            if path.starts_with("settings") && method == "DELETE" {
                continue;
            }
            let a = raw(lab, &base, method, &format!("/users/v1/{path}"), &basic);
            assert_eq!(a.status, 400, "{method} {path}: {}", a.body);
            a.error();
        }
    }
    // A good name still works, and a wrong method is a JSON 405.
    let bob = format!("{base}/users/v1/contacts/sip:bob@contoso.com");
    for (method, url, body, status) in [
        ("PUT", bob.as_str(), Some(r#"{"group":"Friends"}"#), 200),
        ("DELETE", bob.as_str(), None, 200),
        (
            "POST",
            &format!("{base}/users/v1/contacts"),
            Some("{}"),
            405,
        ),
    ] {
        let a = call(lab, method, url, &auth, body);
        assert_eq!(a.status, status, "{method} {url}: {}", a.body);
    }
}
