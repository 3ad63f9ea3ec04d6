//! A day in the life of three conversations' 24-hour windows, on a manual clock and a real
//! sled database in a temporary directory.
//!
//! Run with `cargo run --example windows`.

use chrono::{DateTime, TimeDelta, Utc};
use lipachat::session::{
    Clock, Conversation, ManualClock, SendDecision, Sessions, SledStore, WindowState,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn describe(state: &WindowState) -> String {
    match state {
        WindowState::Open {
            expires_at,
            remaining,
            ..
        } => format!(
            "open, closes {} (in {}h {:02}m)",
            expires_at.format("%Y-%m-%d %H:%M:%S"),
            remaining.num_hours(),
            remaining.num_minutes() % 60
        ),
        WindowState::Closed {
            closed_since,
            cause,
            ..
        } => format!(
            "closed since {} ({cause:?})",
            closed_since.format("%Y-%m-%d %H:%M:%S")
        ),
        WindowState::Never => "never messaged".to_string(),
        _ => format!("{state:?}"),
    }
}

fn decision(decision: &SendDecision) -> String {
    match decision {
        SendDecision::Allowed { .. } => "free-form ALLOWED".to_string(),
        SendDecision::Refused { reason, .. } => {
            format!("free-form REFUSED ({}): template only", reason.name())
        }
    }
}

async fn show(sessions: &Sessions<SledStore>, who: &str, chat: Conversation) -> Result<()> {
    let state = sessions.state(chat).await?;
    let decided = sessions.decide(chat).await?;
    println!(
        "    {who:<6} {:<48} {}",
        describe(&state),
        decision(&decided)
    );
    Ok(())
}

fn step(clock: &ManualClock, what: &str) {
    let now: DateTime<Utc> = clock.now();
    println!("\n[{}] {what}", now.format("%a %H:%M:%S"));
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.db");
    let clock = ManualClock::at("2026-11-23T09:00:00Z".parse()?);
    let sessions = Sessions::new(SledStore::open(&path)?).with_clock(clock.clone());

    let shop = "254110090747";
    let jane = Conversation::parse(shop, "+254 712 345 678")?;
    let omar = Conversation::parse(shop, "254733000111")?;
    // Jane also writes to a second business number: that window is separate.
    let jane_support = Conversation::parse("254110090748", "254712345678")?;

    println!(
        "24-hour customer service windows, business {shop} (sled at {})",
        path.display()
    );
    step(&clock, "Nobody has written yet");
    show(&sessions, "Jane", jane).await?;

    step(&clock, "Jane writes to the shop");
    let recorded = sessions.record_inbound_now(jane).await?;
    println!("    recorded; opened a closed window: {}", recorded.opened);
    show(&sessions, "Jane", jane).await?;
    show(&sessions, "Jane*", jane_support).await?;

    clock.advance(TimeDelta::hours(2));
    step(
        &clock,
        "Omar writes; a webhook for Jane's message of 08:30 arrives late",
    );
    sessions.record_inbound_now(omar).await?;
    let late: DateTime<Utc> = "2026-11-23T08:30:00Z".parse()?;
    sessions.record_inbound(jane, late).await?;
    println!("    the late webhook did not shorten Jane's window:");
    show(&sessions, "Jane", jane).await?;
    show(&sessions, "Omar", omar).await?;

    clock.advance(TimeDelta::hours(21) + TimeDelta::minutes(30));
    step(&clock, "Which windows close within the next hour?");
    for (chat, state) in sessions.closing_within(TimeDelta::hours(1)).await? {
        println!("    {} -> {}", chat.customer, describe(&state));
    }

    clock.advance(TimeDelta::minutes(29) + TimeDelta::seconds(30));
    step(
        &clock,
        "30 seconds before Jane's window closes: inside the 60 s margin",
    );
    show(&sessions, "Jane", jane).await?;

    clock.advance(TimeDelta::seconds(30));
    step(&clock, "Exactly 24 hours after Jane's message");
    show(&sessions, "Jane", jane).await?;

    step(
        &clock,
        "The gateway refuses a send to Omar with 131047 (its clock disagreed)",
    );
    sessions.record_gateway_closure(omar).await?;
    show(&sessions, "Omar", omar).await?;

    clock.advance(TimeDelta::minutes(5));
    step(&clock, "Jane replies to a template: a new window opens");
    let recorded = sessions.record_inbound_now(jane).await?;
    println!(
        "    opened a closed window: {} (queued messages may go now)",
        recorded.opened
    );
    show(&sessions, "Jane", jane).await?;

    step(&clock, "Restart: close the store and open it again");
    drop(sessions);
    let sessions = Sessions::new(SledStore::open(&path)?).with_clock(clock.clone());
    println!("    {} conversations on disk", sessions.count().await?);
    show(&sessions, "Jane", jane).await?;
    show(&sessions, "Omar", omar).await?;
    Ok(())
}
