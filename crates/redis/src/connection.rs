//! The connection: redis-rs's `ConnectionManager` (one multiplexed connection shared by
//! every clone of the store, reconnecting by itself), with every call bounded in time
//! and every failure turned into a [`RedisStoreError`] (a [`StoreError::Backend`] by the
//! time it leaves the store).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lipachat_session::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, FromRedisValue, RedisError, RedisResult, Script};

use crate::config::{RedisConfig, hide_passwords, password_forms, redact};
use crate::error::RedisStoreError;

/// Whether a call may be sent again after the connection broke under it: only when a
/// second run cannot change what the first one did (reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A read: retried once after a broken connection, within the time bound.
    Once,
    /// A write: never resent, the caller decides (it may have been applied).
    Never,
}

/// One script call: the script, its keys and its arguments.
pub(crate) struct Eval<'a> {
    pub(crate) script: &'a Script,
    pub(crate) keys: Vec<String>,
    pub(crate) args: Vec<String>,
}

/// How long sent data may stay unacknowledged by the peer's kernel before the
/// connection counts as dead (Linux `TCP_USER_TIMEOUT`), so a connection to a vanished
/// host is dropped and replaced instead of timing out call after call. A frozen but
/// running server's kernel still acknowledges, so this never fires for it.
pub(crate) const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// No Nagle delay (requests are small), and [`DEAD_PEER_TIMEOUT`] where supported.
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    let settings = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(DEAD_PEER_TIMEOUT);
    settings
}

/// The shared connection.
#[derive(Clone)]
pub(crate) struct Connection {
    manager: ConnectionManager,
    operation: Duration,
    endpoint: String,
    /// The password's forms, taken out of every message (a wrong server may quote it).
    passwords: Arc<[String]>,
}

impl Connection {
    /// Connects, within the operation timeout.
    pub(crate) async fn open(config: &RedisConfig) -> Result<Self, StoreError> {
        let timeouts = config.timeouts();
        let endpoint = redact(config.url());
        let passwords: Arc<[String]> = password_forms(config.url()).into();
        let cannot_connect = |detail: String| RedisStoreError::Connect {
            endpoint: endpoint.clone(),
            detail: hide_passwords(&passwords, &detail),
        };
        let client =
            Client::open(config.url()).map_err(|error| cannot_connect(error.to_string()))?;
        // Reconnection: one retry after at most 200 ms; each attempt bounded by the
        // connect timeout. A call waiting for it is bounded by the operation timeout.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(timeouts.connect)
            .set_response_timeout(timeouts.response)
            .set_number_of_retries(1)
            .set_max_delay(200)
            .set_tcp_settings(tcp_settings());
        let manager = match tokio::time::timeout(
            timeouts.operation,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        {
            Ok(Ok(manager)) => manager,
            Ok(Err(error)) => return Err(cannot_connect(error.to_string()).into()),
            Err(_) => {
                let detail = format!("no connection within {:?}", timeouts.operation);
                return Err(cannot_connect(detail).into());
            }
        };
        Ok(Self {
            manager,
            operation: timeouts.operation,
            endpoint,
            passwords,
        })
    }

    fn error(&self, what: &str, error: &RedisError) -> RedisStoreError {
        RedisStoreError::Call {
            endpoint: self.endpoint.clone(),
            operation: what.to_owned(),
            detail: self.hidden(&error.to_string()),
        }
    }

    /// `text` with the password taken out of it in every form (a server's answer quoted
    /// in it may hold it).
    fn hidden(&self, text: &str) -> String {
        hide_passwords(&self.passwords, text)
    }

    /// The server does not suit the store, for the reason `detail`.
    pub(crate) fn unsuitable(&self, detail: &str) -> RedisStoreError {
        RedisStoreError::Unsuitable {
            endpoint: self.endpoint.clone(),
            detail: self.hidden(detail),
        }
    }

    /// The server's `answer` to `operation` is not what the store expects.
    pub(crate) fn unexpected(&self, operation: &str, answer: &str) -> RedisStoreError {
        RedisStoreError::UnexpectedAnswer {
            operation: operation.to_owned(),
            answer: self.hidden(answer),
        }
    }

    /// Runs `call` on the connection, bounded by the operation timeout; with
    /// [`Retry::Once`], runs it a second time if the connection broke under the first.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        call: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            let first = call(self.manager.clone()).await;
            match first {
                Err(error) if retry == Retry::Once && error.is_unrecoverable_error() => {
                    tracing::debug!(%error, what, "redis connection broke; retrying the read once");
                    call(self.manager.clone()).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.operation, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(what, &error).into()),
            Err(_) => Err(RedisStoreError::Timeout {
                endpoint: self.endpoint.clone(),
                operation: what.to_owned(),
                after: self.operation,
            }
            .into()),
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(what, retry, |mut connection| async move {
            command.query_async(&mut connection).await
        })
        .await
    }

    /// Runs a pipeline (atomic with `MULTI`/`EXEC` when built with `.atomic()`).
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        pipeline: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.run(what, retry, |mut connection| async move {
            pipeline.query_async(&mut connection).await
        })
        .await
    }

    /// Runs scripts in one round trip (`EVALSHA`, loading the scripts once if the server
    /// does not know them, as after a restart), preceded by `before` (for example the
    /// registry's `SADD`, whose answer is ignored). Returns each script's answer.
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        before: Option<redis::Cmd>,
        evals: &[Eval<'_>],
    ) -> Result<Vec<T>, StoreError> {
        if evals.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        if let Some(command) = before {
            pipeline.add_command(command).ignore();
        }
        for eval in evals {
            pipeline
                .cmd("EVALSHA")
                .arg(eval.script.get_hash())
                .arg(eval.keys.len())
                .arg(&eval.keys)
                .arg(&eval.args);
        }
        let pipeline = &pipeline;
        self.run(what, retry, |mut connection| async move {
            match pipeline.query_async(&mut connection).await {
                Err(error) if error.kind() == ErrorKind::NoScriptError => {
                    for eval in evals {
                        eval.script
                            .prepare_invoke()
                            .load_async(&mut connection)
                            .await?;
                    }
                    // The scripts were not run (EVALSHA failed), and `before` is
                    // idempotent: sending the pipeline again is safe.
                    pipeline.query_async(&mut connection).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs one script; see [`Connection::eval`].
    pub(crate) async fn eval_one<T: FromRedisValue>(
        &self,
        what: &str,
        retry: Retry,
        before: Option<redis::Cmd>,
        eval: Eval<'_>,
    ) -> Result<T, StoreError> {
        let mut answers = self.eval(what, retry, before, &[eval]).await?;
        answers.pop().ok_or_else(|| {
            self.unexpected(what, "nothing (the script gave no answer)")
                .into()
        })
    }
}
