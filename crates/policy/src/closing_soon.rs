//! Hearing of windows about to close, so the bot can send a last message while it may.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lipachat_session::{Conversation, Store, WindowState};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::messenger::Messenger;

/// An open window that closes within the watched lead time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosingSoon {
    /// The conversation.
    pub conversation: Conversation,
    /// When its window closes.
    pub expires_at: DateTime<Utc>,
    /// Time left when it was noticed.
    pub remaining: TimeDelta,
}

/// A background task reporting each window once when it enters the lead time. Dropping
/// the watch stops the task.
#[derive(Debug)]
pub struct ClosingSoonWatch {
    receiver: mpsc::Receiver<ClosingSoon>,
    task: JoinHandle<()>,
}

impl ClosingSoonWatch {
    /// The next window entering the lead time; `None` once the task has stopped.
    pub async fn recv(&mut self) -> Option<ClosingSoon> {
        self.receiver.recv().await
    }
}

impl Drop for ClosingSoonWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Store> Messenger<S> {
    /// Starts a tokio task that checks every `every` for open windows closing within
    /// `lead` (from the store's index, no full scan) and reports each window once. A
    /// window renewed by a new inbound message is reported again when its new expiry comes
    /// near.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use lipachat_session::Clock;
    /// # let clock = lipachat_session::ManualClock::at("2026-11-23T10:00:00Z".parse()?);
    /// # let (gateway, dir) = (lipachat_testkit::StandInGateway::builder().clock(clock.clone()).start().await?, tempfile::tempdir()?);
    /// # let client = lipachat_api::Client::builder(lipachat_api::ApiKey::new(gateway.api_key())?).base_url(&gateway.base_url()).build()?;
    /// # let sessions = lipachat_session::Sessions::new(lipachat_session::SledStore::open(dir.path().join("db"))?).with_clock(clock.clone());
    /// use std::time::Duration;
    /// use chrono::TimeDelta;
    /// use lipachat_policy::{Messenger, PolicyConfig};
    /// use lipachat_session::Conversation;
    ///
    /// let messenger = Messenger::new(sessions, client, PolicyConfig::default());
    /// let chat = Conversation::parse("254110090747", "254712345678")?;
    /// messenger.on_inbound(chat, clock.now()).await?;
    /// let mut watch = messenger.watch_closing_soon(TimeDelta::minutes(15), Duration::from_millis(10));
    /// // Ten minutes before the window closes.
    /// clock.advance(TimeDelta::hours(24) - TimeDelta::minutes(10));
    /// let soon = tokio::time::timeout(Duration::from_secs(5), watch.recv()).await?.expect("reported");
    /// assert_eq!(soon.conversation, chat);
    /// assert_eq!(soon.remaining, TimeDelta::minutes(10));
    /// # Ok(()) }
    /// ```
    pub fn watch_closing_soon(&self, lead: TimeDelta, every: Duration) -> ClosingSoonWatch {
        let (sender, receiver) = mpsc::channel(1024);
        let messenger = self.clone();
        let task = tokio::spawn(async move {
            let mut seen: HashSet<(Conversation, DateTime<Utc>)> = HashSet::new();
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = messenger.sessions().now();
                seen.retain(|(_, expires_at)| *expires_at > now);
                let found = match messenger.sessions().closing_within_at(lead, now).await {
                    Ok(found) => found,
                    Err(error) => {
                        warn!(%error, "closing-soon check failed; retrying at the next tick");
                        continue;
                    }
                };
                for (conversation, state) in found {
                    let WindowState::Open {
                        expires_at,
                        remaining,
                        ..
                    } = state
                    else {
                        continue;
                    };
                    if seen.insert((conversation, expires_at)) {
                        let event = ClosingSoon {
                            conversation,
                            expires_at,
                            remaining,
                        };
                        if sender.send(event).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        ClosingSoonWatch { receiver, task }
    }
}
