//! Window checks when a tenth of the conversations are with users known only by a
//! business-scoped user id (keyed by the store's handle for the id), against the same
//! population with phones only, in the same run: checks of the mixed population, and
//! phone-keyed checks in each store.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lipachat_session::{
    Bsuid, Conversation, Customer, IdentityStore, Sessions, SledStore, SystemClock,
};

use crate::data::Population;
use crate::measure::{concurrent, progress};
use crate::sled_workloads::{CHECK_TASKS, periodic};

/// One conversation in this many is with a user known only by id.
const USER_EVERY: usize = 10;
/// Rounds of each check workload, interleaved; each figure is the best of its rounds.
const ROUNDS: usize = 2;

/// The results of the mixed-population workload.
#[derive(Debug, Default)]
pub struct MixFigures {
    /// Conversations with a user known only by id.
    pub users: usize,
    /// Checks per second over the whole mixed population.
    pub check_per_s: f64,
    /// Checks per second of the phone-keyed conversations of the mixed store.
    pub phone_check_per_s: f64,
    /// Checks per second of the same phone-keyed conversations in a store of phones only.
    pub all_phone_check_per_s: f64,
}

type Engine = Arc<Sessions<SledStore>>;

/// Records every conversation (8 tasks, periodic mode).
async fn load(sessions: &Engine, conversations: Vec<Conversation>, inbound: &[DateTime<Utc>]) {
    let (conversations, inbound) = (Arc::new(conversations), Arc::new(inbound.to_vec()));
    let per_task = conversations.len() / CHECK_TASKS;
    let sessions = Arc::clone(sessions);
    concurrent(CHECK_TASKS, per_task, move |task, i| {
        let (sessions, conversations, inbound) = (
            Arc::clone(&sessions),
            Arc::clone(&conversations),
            Arc::clone(&inbound),
        );
        async move {
            let k = task * per_task + i;
            sessions
                .record_inbound(conversations[k], inbound[k])
                .await
                .is_ok()
        }
    })
    .await;
}

/// Checks/s of `probes` on `sessions` (8 tasks).
async fn checks(sessions: &Engine, probes: &Arc<Vec<Conversation>>) -> f64 {
    let per_task = probes.len() / CHECK_TASKS;
    let (sessions, probes) = (Arc::clone(sessions), Arc::clone(probes));
    concurrent(CHECK_TASKS, per_task, move |task, i| {
        let (sessions, probes) = (Arc::clone(&sessions), Arc::clone(&probes));
        async move {
            let decision = sessions.decide(probes[task * per_task + i]).await;
            std::hint::black_box(decision.is_ok())
        }
    })
    .await
}

/// Loads the population twice: as it is (phones only), and with every tenth
/// conversation's customer replaced by a user handle (allocated through the store, as
/// webhooks would); then measures checks on both.
pub async fn run(
    dir: &Path,
    population: &Population,
    check_count: usize,
) -> Result<MixFigures, Box<dyn std::error::Error>> {
    let mixed_store = periodic(&dir.join("bsuid-mix"))?;
    progress(&format!(
        "a tenth of {} conversations keyed by a user id: allocating handles",
        population.len()
    ));
    let mut mixed = population.conversations.clone();
    let mut phones = Vec::new();
    let mut users = 0;
    for (i, conversation) in mixed.iter_mut().enumerate() {
        if i % USER_EVERY == 0 {
            let user = mixed_store
                .user_ref(&Bsuid::parse(&format!("KE.{i}"))?)
                .await?;
            *conversation =
                Conversation::with_customer(conversation.business, Customer::User(user));
            users += 1;
        } else {
            phones.push(*conversation);
        }
    }
    progress("loading the mixed population and the phones-only one (periodic mode)");
    let mixed_engine: Engine = Arc::new(Sessions::new(mixed_store).with_clock(SystemClock));
    let phone_engine: Engine =
        Arc::new(Sessions::new(periodic(&dir.join("bsuid-mix-phones"))?).with_clock(SystemClock));
    load(&mixed_engine, mixed.clone(), &population.inbound).await;
    load(
        &phone_engine,
        population.conversations.clone(),
        &population.inbound,
    )
    .await;

    let mut rng = fastrand::Rng::with_seed(11);
    let mixed_probes: Arc<Vec<Conversation>> = Arc::new(
        (0..check_count)
            .map(|_| mixed[rng.usize(0..mixed.len())])
            .collect(),
    );
    let phone_probes: Arc<Vec<Conversation>> = Arc::new(
        (0..check_count)
            .map(|_| phones[rng.usize(0..phones.len())])
            .collect(),
    );
    let mut figures = MixFigures {
        users,
        ..MixFigures::default()
    };
    progress(&format!(
        "{check_count} window checks x 3 workloads, {ROUNDS} interleaved rounds"
    ));
    for _ in 0..ROUNDS {
        let all_phone = checks(&phone_engine, &phone_probes).await;
        figures.all_phone_check_per_s = figures.all_phone_check_per_s.max(all_phone);
        let phone = checks(&mixed_engine, &phone_probes).await;
        figures.phone_check_per_s = figures.phone_check_per_s.max(phone);
        let all = checks(&mixed_engine, &mixed_probes).await;
        figures.check_per_s = figures.check_per_s.max(all);
    }
    Ok(figures)
}
