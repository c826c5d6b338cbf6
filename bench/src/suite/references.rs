//! The references imapfs is compared with: the protocol floor, mbsync's full sync and grep
//! over the Maildir mbsync wrote.

use std::fs::File;
use std::io;
use std::process::{Command, Stdio};
use std::time::Instant;

use fixture::proxy::Proxy;

use super::{lines_of, settled_bytes, Bench, FLOOR_COMMAND};
use crate::cpu;
use crate::process::run_timed;
use crate::stats::Sample;

impl Bench<'_> {
    /// The single floor command on one connection, through the loopback or slow proxy.
    pub(super) fn floor(&self, slow: bool) -> io::Result<Sample> {
        let proxy = if slow { &self.slow } else { &self.loopback };
        self.timed_command(proxy, FLOOR_COMMAND)
    }

    /// `command` alone on loopback, timed as the floor is (R11).
    pub(super) fn one_command(&self, command: &str) -> io::Result<Sample> {
        self.timed_command(&self.loopback, command)
    }

    /// One FETCH of every message through `proxy`: time from sending it to its tagged OK.
    fn timed_command(&self, proxy: &Proxy, command: &str) -> io::Result<Sample> {
        let mut session = self.raw_session(proxy.addr())?;
        settled_bytes(proxy);
        proxy.reset_counters();
        let server_before = self.server_cpu();
        let client_before = cpu::thread_seconds();
        let started = Instant::now();
        let reply = session.run(command)?;
        let seconds = started.elapsed().as_secs_f64();
        let client_cpu = cpu::thread_seconds() - client_before;
        let bytes = settled_bytes(proxy);
        let server_cpu = self.server_cpu() - server_before;
        session.logout();
        if reply.fetches != self.corpus.messages as u64 {
            return Err(io::Error::other(format!(
                "`{command}` returned {} messages, expected {}",
                reply.fetches, self.corpus.messages
            )));
        }
        Ok(Sample {
            seconds,
            bytes,
            commands: Some(1),
            client_cpu: Some(client_cpu),
            server_cpu: Some(server_cpu),
        })
    }

    pub(super) fn mbsync(&self, compress: bool) -> io::Result<Sample> {
        let mbsync = if compress {
            &self.mbsync_deflate
        } else {
            &self.mbsync_plain
        };
        settled_bytes(&self.loopback);
        self.loopback.reset_counters();
        let server_before = self.server_cpu();
        let timed = mbsync.full_sync(self.corpus.messages)?;
        let bytes = settled_bytes(&self.loopback);
        Ok(Sample {
            seconds: timed.seconds(),
            bytes,
            commands: None,
            client_cpu: Some(timed.cpu_seconds),
            server_cpu: Some(self.server_cpu() - server_before),
        })
    }

    /// `grep -rl` over the Maildir the last mbsync run made; returns the matching files.
    pub(super) fn grep_maildir(&self) -> io::Result<(Sample, usize)> {
        let out = self.scratch("grep.out");
        let mut grep = Command::new("grep");
        grep.arg("-rl")
            .arg("--")
            .arg(&self.config.word)
            .arg(self.mbsync_plain.inbox());
        let timed = run_timed(&mut grep, "grep", Stdio::from(File::create(&out)?), &[0, 1])?;
        let matches = lines_of(&out)?.len();
        Ok((
            Sample {
                seconds: timed.seconds(),
                bytes: 0,
                commands: Some(0),
                client_cpu: Some(timed.cpu_seconds),
                server_cpu: None,
            },
            matches,
        ))
    }
}
