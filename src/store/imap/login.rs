//! Getting a connection ready: the greeting, STARTTLS, LOGIN or AUTHENTICATE, the
//! capabilities, and `ENABLE CONDSTORE`
//! ([RFC 3501 §6.2](https://www.rfc-editor.org/rfc/rfc3501#section-6.2)).

use std::sync::Arc;

use base64::Engine as _;

use super::connection::{
    port_speaks, Auth, CommandLimits, Compression, ConnectConfig, Connection, CountingTcp,
    GREETING_WAIT,
};
use super::errors::from_wire;
use super::quote;
use super::wire::{Code, Command, Response, Status, Tagged, Untagged, Wire, WireError};
use crate::store::{StoreError, StoreResult};

/// The most the greeting, the login exchange or CAPABILITY may take.
pub const LOGIN_BUDGET: u64 = 1 << 20;

/// How many challenges a SASL exchange answers before giving up on a server that keeps
/// sending them.
const MAX_CHALLENGES: usize = 3;

/// Reads the greeting in plaintext and asks for STARTTLS; true if the server agreed, and
/// then the TLS handshake must start at the very next byte.
pub fn starttls(
    tcp: &mut CountingTcp,
    limits: &Arc<CommandLimits>,
    config: &ConnectConfig,
) -> StoreResult<bool> {
    let started = std::time::Instant::now();
    limits.start_greeting(LOGIN_BUDGET, GREETING_WAIT.min(config.timeout));
    let head = tcp.head_handle();
    let mut wire = Wire::new(tcp, Arc::clone(limits));
    if let Err(e) = wire.read_greeting() {
        let head = head.lock().clone();
        return Err(plain_greeting_error(e, &head, started.elapsed(), config));
    }
    limits.start_command(LOGIN_BUDGET);
    let done = wire.run(Command::new("STARTTLS")).map_err(from_wire)?;
    if done.tagged.status != Status::Ok {
        return Ok(false);
    }
    wire.into_inner().map_err(from_wire)?;
    Ok(true)
}

/// Why a plaintext greeting did not come: a TLS port answers nothing until it hears a
/// handshake (or sends a TLS alert), which is said as such.
fn plain_greeting_error(
    e: WireError,
    head: &[u8],
    waited: std::time::Duration,
    config: &ConnectConfig,
) -> StoreError {
    let tls_port = |what: String| {
        StoreError::Connection(format!(
            "{}:{} {what}: it speaks TLS from the first byte. Use imaps://USER@{}:{} for this \
             port, or the server's STARTTLS port (usually 143) with imap://",
            config.host, config.port, config.host, config.port
        ))
    };
    match port_speaks(head) {
        Some("TLS") => tls_port("answered with a TLS record instead of an IMAP greeting".into()),
        None if head.is_empty() && waited < config.timeout => tls_port(format!(
            "sent no IMAP greeting within {:.1} s",
            GREETING_WAIT.as_secs_f64()
        )),
        _ => from_wire(e),
    }
}

/// Authenticates `conn` as `config` says, then learns its capabilities and enables CONDSTORE.
pub fn log_in(
    conn: &mut Connection,
    config: &ConnectConfig,
    greeting_pending: bool,
) -> StoreResult<()> {
    let mut preauth = false;
    if greeting_pending {
        conn.start_step(LOGIN_BUDGET);
        let greeting = conn.wire.read_greeting().map_err(from_wire)?;
        preauth = greeting.preauth;
        if let Some(Code::Capability(caps)) = greeting.code {
            conn.wire.set_capabilities(&caps);
        }
    }
    let mut capabilities = None;
    if !preauth {
        let done = match config.auth {
            Auth::Login => {
                let user = quote::string(&config.user, "user name")?;
                let password = quote::string(config.secret.expose(), "password")?;
                let cmd = Command::new("LOGIN").arg(&user).arg(&password);
                conn.run_unchecked(LOGIN_BUDGET, cmd)?
            }
            method => authenticate(conn, config, method)?,
        };
        if done.tagged.status != Status::Ok {
            return Err(StoreError::Refused(format!(
                "login as {} at {} refused: {}",
                config.user,
                config.host,
                super::wire::short(&done.tagged.text)
            )));
        }
        capabilities = done.codes().find_map(|c| match c {
            Code::Capability(caps) => Some(caps.clone()),
            _ => None,
        });
    }
    let capabilities = match capabilities {
        Some(caps) => caps,
        None => {
            let done = conn.run_with_budget(LOGIN_BUDGET, Command::new("CAPABILITY"))?;
            done.untagged
                .into_iter()
                .find_map(|u| match u {
                    Untagged::Capability(caps) => Some(caps),
                    _ => None,
                })
                .ok_or_else(|| StoreError::Protocol("CAPABILITY answered without one".into()))?
        }
    };
    conn.wire.set_capabilities(&capabilities);
    conn.capabilities = capabilities;
    if conn.has_capability("COMPRESS=DEFLATE") {
        if config.compress.wanted(conn.peer()) {
            start_compression(conn)?;
        } else if config.compress == Compression::Auto {
            tracing::debug!("the server is on this machine: COMPRESS=DEFLATE is not used (--compress always uses it)");
        }
    }
    if conn.has_capability("CONDSTORE") && conn.has_capability("ENABLE") {
        // Then every EXAMINE reports HIGHESTMODSEQ, which tells an unchanged mailbox from
        // a changed one without listing it again (RFC 7162 §3.1).
        conn.run_with_budget(LOGIN_BUDGET, Command::new("ENABLE").syntax("CONDSTORE"))?;
    }
    Ok(())
}

/// `COMPRESS DEFLATE` ([RFC 4978 §3](https://www.rfc-editor.org/rfc/rfc4978#section-3)):
/// after the server's OK, both directions are compressed from the next byte. A refusal
/// (`NO`, `BAD`) leaves the connection as it was.
fn start_compression(conn: &mut Connection) -> StoreResult<()> {
    let done = conn.run_unchecked(LOGIN_BUDGET, Command::new("COMPRESS").syntax("DEFLATE"))?;
    if done.tagged.status != Status::Ok {
        tracing::debug!(
            "the server refused COMPRESS DEFLATE: {}",
            super::wire::short(&done.tagged.text)
        );
        return Ok(());
    }
    conn.wire
        .stream_at_boundary()
        .map_err(from_wire)?
        .start_deflate();
    Ok(())
}

/// The first SASL response for `method` ([RFC 4616](https://www.rfc-editor.org/rfc/rfc4616),
/// [RFC 7628 §3.1](https://www.rfc-editor.org/rfc/rfc7628#section-3.1), Google's XOAUTH2).
fn sasl_response(
    method: Auth,
    user: &str,
    secret: &str,
    host: &str,
    port: u16,
) -> (&'static str, Vec<u8>) {
    match method {
        Auth::Login | Auth::Plain => ("PLAIN", format!("\0{user}\0{secret}").into_bytes()),
        Auth::XOAuth2 => (
            "XOAUTH2",
            format!("user={user}\x01auth=Bearer {secret}\x01\x01").into_bytes(),
        ),
        Auth::OAuthBearer => (
            "OAUTHBEARER",
            format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01")
                .into_bytes(),
        ),
    }
}

/// `AUTHENTICATE method`, the response to the server's `+`, and the answer. A second `+` is
/// an error report (XOAUTH2's JSON, RFC 7628 §3.2.3): it is answered with the dummy
/// response so the server sends its NO. The answer is returned whatever its status.
fn authenticate(
    conn: &mut Connection,
    config: &ConnectConfig,
    method: Auth,
) -> StoreResult<super::wire::Done> {
    let (name, response) = sasl_response(
        method,
        &config.user,
        config.secret.expose(),
        &config.host,
        config.port,
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(response);
    conn.begin_exchange(LOGIN_BUDGET);
    let exchange = |wire: &mut Wire<_>| -> Result<(Vec<Untagged>, Tagged), WireError> {
        let tag = wire.send(Command::new("AUTHENTICATE").syntax(name))?;
        let mut untagged = Vec::new();
        let mut challenges = 0;
        loop {
            match wire.next_response()? {
                Response::Continuation(_) => {
                    challenges += 1;
                    if challenges > MAX_CHALLENGES {
                        return Err(WireError::Protocol(
                            "the server keeps sending SASL challenges".into(),
                        ));
                    }
                    let line: &[u8] = match (challenges, method) {
                        (1, _) => encoded.as_bytes(),
                        (_, Auth::OAuthBearer) => b"AQ==",
                        _ => b"",
                    };
                    wire.write_line(line)?;
                }
                Response::Tagged(t) if t.tag == tag => {
                    wire.forget(&tag);
                    return Ok((untagged, t));
                }
                Response::Tagged(t) => {
                    return Err(WireError::Protocol(format!(
                        "an answer for tag {:?} during AUTHENTICATE",
                        super::wire::short(&t.tag)
                    )))
                }
                Response::Untagged(u) => untagged.push(u),
            }
        }
    };
    let (untagged, tagged) = exchange(&mut conn.wire).map_err(from_wire)?;
    Ok(super::wire::Done { untagged, tagged })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_responses_follow_their_specifications() {
        let response = |m| sasl_response(m, "alice", "s3cret", "imap.example.org", 993);
        assert_eq!(
            response(Auth::Plain),
            ("PLAIN", b"\0alice\0s3cret".to_vec())
        );
        assert_eq!(
            response(Auth::XOAuth2),
            (
                "XOAUTH2",
                b"user=alice\x01auth=Bearer s3cret\x01\x01".to_vec()
            )
        );
        assert_eq!(
            response(Auth::OAuthBearer).1,
            b"n,a=alice,\x01host=imap.example.org\x01port=993\x01auth=Bearer s3cret\x01\x01"
                .to_vec()
        );
    }
}
