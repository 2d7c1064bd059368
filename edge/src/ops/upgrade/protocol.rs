//! The upgrade conversation: its messages (one line each), where the old
//! process stands in it (pure transitions), and one end of the Unix socket
//! that carries lines and, with `sockets`, the listening descriptors
//! (`SCM_RIGHTS`).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::net::UnixStream;

use super::MAX_LINE;
use super::error::UpgradeError;
use crate::server::sockets::Role;

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// new → old: config valid, ready for the sockets.
    Hello { pid: u32 },
    /// old → new: these sockets are attached, in this order.
    Sockets(Vec<Role>),
    /// new → old: sockets taken, everything else built; release the data
    /// directory.
    Release,
    /// old → new: the data directory is unlocked and unused.
    Released,
    /// new → old: accepting now.
    Serving,
}

impl Message {
    pub fn encode(&self) -> String {
        match self {
            Message::Hello { pid } => format!("hello {pid}\n"),
            Message::Sockets(roles) => {
                let mut line = String::from("sockets");
                for role in roles {
                    line.push(' ');
                    line.push_str(role.name());
                }
                line.push('\n');
                line
            }
            Message::Release => "release\n".into(),
            Message::Released => "released\n".into(),
            Message::Serving => "serving\n".into(),
        }
    }

    /// A line without its newline.
    pub fn decode(line: &str) -> Result<Message, UpgradeError> {
        let bad = || UpgradeError::Protocol(format!("unknown message {line:?}"));
        let mut words = line.split(' ');
        let message = match words.next() {
            Some("hello") => Message::Hello {
                pid: words.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?,
            },
            Some("sockets") => Message::Sockets(
                words
                    .by_ref()
                    .map(|w| Role::from_name(w).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            ),
            Some("release") => Message::Release,
            Some("released") => Message::Released,
            Some("serving") => Message::Serving,
            _ => return Err(bad()),
        };
        match words.next() {
            None => Ok(message),
            Some(_) => Err(bad()),
        }
    }
}

/// Where the old process is in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    AwaitHello,
    AwaitRelease,
    AwaitServing,
    Finished,
}

/// What the old process does on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    SendSockets,
    ReleaseDataDir,
    Done,
}

impl Stage {
    /// The old process's transitions: anything out of order ends the
    /// upgrade (before `release`, with nothing given up).
    pub fn on(self, message: &Message) -> Result<(Step, Stage), UpgradeError> {
        match (self, message) {
            (Stage::AwaitHello, Message::Hello { .. }) => {
                Ok((Step::SendSockets, Stage::AwaitRelease))
            }
            (Stage::AwaitRelease, Message::Release) => {
                Ok((Step::ReleaseDataDir, Stage::AwaitServing))
            }
            (Stage::AwaitServing, Message::Serving) => Ok((Step::Done, Stage::Finished)),
            (stage, message) => Err(UpgradeError::Protocol(format!(
                "{message:?} while in {stage:?}"
            ))),
        }
    }
}

/// One end of the upgrade socket: lines out, lines and descriptors in.
pub(super) struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
}

impl Conn {
    pub(super) fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Sends `message`, with `fds` attached to its first byte.
    pub(super) async fn send(
        &self,
        message: &Message,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), UpgradeError> {
        let line = message.encode();
        let bytes = line.as_bytes();
        let mut written = 0;
        while written < bytes.len() {
            let n = self
                .stream
                .async_io(Interest::WRITABLE, || {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    if written == 0
                        && !fds.is_empty()
                        && !control.push(SendAncillaryMessage::ScmRights(fds))
                    {
                        return Err(std::io::Error::other("too many sockets to pass"));
                    }
                    rustix::net::sendmsg(
                        &self.stream,
                        &[IoSlice::new(&bytes[written..])],
                        &mut control,
                        SendFlags::NOSIGNAL,
                    )
                    .map_err(std::io::Error::from)
                })
                .await?;
            if n == 0 {
                return Err(UpgradeError::Closed);
            }
            written += n;
        }
        Ok(())
    }

    /// The next message; descriptors that came with it are in `self.fds`.
    pub(super) async fn recv(&mut self) -> Result<Message, UpgradeError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                let text = std::str::from_utf8(&line[..end])
                    .map_err(|_| UpgradeError::Protocol("a line that is not UTF-8".into()))?;
                return Message::decode(text);
            }
            if self.buf.len() > MAX_LINE {
                return Err(UpgradeError::Protocol("a line too long".into()));
            }
            let mut chunk = [0u8; MAX_LINE];
            let (n, fds) = self
                .stream
                .async_io(Interest::READABLE, || {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let got = rustix::net::recvmsg(
                        &self.stream,
                        &mut [IoSliceMut::new(&mut chunk)],
                        &mut control,
                        RecvFlags::CMSG_CLOEXEC,
                    )
                    .map_err(std::io::Error::from)?;
                    let mut fds = Vec::new();
                    for message in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(passed) = message {
                            fds.extend(passed);
                        }
                    }
                    Ok((got.bytes, fds))
                })
                .await?;
            self.fds.extend(fds);
            if n == 0 {
                return Err(UpgradeError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
