//! The quickstart: a scripted conversation on a manual clock against the stand-in gateway
//! on loopback, with a real sled database in a temporary directory. No account needed.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It never contacts the real gateway because a key happens to be set. A real send needs
//! explicit flags, a key in `LIPACHAT_API_KEY`, and a customer who messaged the business
//! number (for the sandbox: send your join code to it first):
//!
//! ```text
//! cargo run --example quickstart -- --live --to 2547XXXXXXXX [--from 254110090747] --customer-wrote
//! ```

use std::process::ExitCode;

use chrono::TimeDelta;
use lipachat::api::{ApiKey, Client, ContactMessage, ContactPhone, TemplateMessage};
use lipachat::policy::{Messenger, OnClosed, PolicyConfig, SendOutcome};
use lipachat::session::{
    Clock, Conversation, ManualClock, PhoneNumber, Sessions, SledStore, WindowState,
};
use lipachat_testkit::{MessageKind, StandInGateway, template_entry};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SANDBOX: &str = "254110090747";

fn window(state: &WindowState) -> String {
    match state {
        WindowState::Open {
            expires_at,
            remaining,
            ..
        } => format!(
            "window OPEN until {} ({}h {:02}m left)",
            expires_at.format("%a %H:%M"),
            remaining.num_hours(),
            remaining.num_minutes() % 60
        ),
        WindowState::Closed { closed_since, .. } => {
            format!("window CLOSED since {}", closed_since.format("%a %H:%M"))
        }
        WindowState::Never => "window CLOSED (customer never wrote)".to_string(),
        other => format!("{other:?}"),
    }
}

fn outcome(outcome: &SendOutcome) -> String {
    match outcome {
        SendOutcome::Sent { message_id, .. } => format!("SENT (messageId {message_id})"),
        SendOutcome::Queued {
            message_id,
            template,
            reason,
            ..
        } => format!(
            "QUEUED until the customer replies (messageId {message_id}, window {}); {}",
            reason.name(),
            match template {
                Some(t) => format!(
                    "invitation template sent (messageId {}, category {}, catalog check: {})",
                    t.message_id,
                    t.category.as_ref().map_or("unknown", |c| c.as_str()),
                    t.check.name()
                ),
                None => "invitation already sent for this closed window".to_string(),
            }
        ),
        SendOutcome::Rerouted { template, .. } => {
            format!("REROUTED to a template (sent: {})", template.is_some())
        }
        SendOutcome::Rejected { reason, .. } => format!("REJECTED ({})", reason.name()),
        other => format!("{other:?}"),
    }
}

fn card() -> Result<ContactMessage> {
    Ok(ContactMessage::new(
        "Acme Support",
        vec![ContactPhone::on_whatsapp("254700123456".parse()?, "Work")],
    )?)
}

async fn show_state(messenger: &Messenger<SledStore>, chat: Conversation) -> Result<()> {
    let state = messenger.sessions().state(chat).await?;
    println!("{:<9}{}", "", window(&state));
    Ok(())
}

async fn scripted() -> Result<()> {
    let clock = ManualClock::at("2026-11-23T09:00:00Z".parse()?);
    let gateway = StandInGateway::builder()
        .clock(clock.clone())
        .start()
        .await?;
    // The business's approved template, as the gateway's catalog lists it: the send path
    // checks the invitation against it before sending.
    gateway.set_templates(
        SANDBOX.parse()?,
        vec![template_entry(
            "contact_share",
            "en",
            "UTILITY",
            "APPROVED",
            None,
            "We have an answer for you. Reply to see it.",
        )],
    );
    let dir = tempfile::tempdir()?;
    let client = Client::builder(ApiKey::new(gateway.api_key())?)
        .base_url(&gateway.base_url())
        .build()?;
    let invite = TemplateMessage::new("contact_share", "en")?;
    let sessions =
        Sessions::new(SledStore::open(dir.path().join("sessions.db"))?).with_clock(clock.clone());
    let messenger = Messenger::new(
        sessions,
        client,
        PolicyConfig::default().on_closed(OnClosed::Queue(invite)),
    );
    let customer: PhoneNumber = "+254 712 345 678".parse()?;
    let chat = Conversation::new(SANDBOX.parse()?, customer);

    println!(
        "Quickstart: business {} and customer {}",
        chat.business, chat.customer
    );
    println!(
        "Stand-in gateway at {} (no real messages are sent)\n",
        gateway.base_url()
    );
    let step = |what: &str| println!("[{}] {what}", clock.now().format("%a %H:%M"));

    step("Customer writes \"Hi, can I talk to support?\"");
    gateway.customer_writes(chat.business, customer);
    messenger.on_inbound(chat, clock.now()).await?;
    show_state(&messenger, chat).await?;

    step("Bot shares the support contact card");
    let sent = messenger.send_contact(chat, card()?).await?;
    println!("{:<9}{}", "", outcome(&sent));
    show_state(&messenger, chat).await?;

    clock.advance(TimeDelta::hours(25));
    step("25 hours later, the bot shares the card again");
    show_state(&messenger, chat).await?;
    let queued = messenger.send_contact(chat, card()?).await?;
    println!("{:<9}{}", "", outcome(&queued));

    clock.advance(TimeDelta::minutes(10));
    step("Bot tries once more before any reply");
    let again = messenger.send_contact(chat, card()?).await?;
    println!("{:<9}{}", "", outcome(&again));

    clock.advance(TimeDelta::hours(2));
    step("Customer replies to the template");
    gateway.customer_writes(chat.business, customer);
    let report = messenger.on_inbound(chat, clock.now()).await?;
    show_state(&messenger, chat).await?;
    for delivered in &report.delivery.delivered {
        println!(
            "{:<9}DELIVERED queued card (messageId {}, queued {})",
            "",
            delivered.message_id,
            delivered.queued_at.format("%a %H:%M")
        );
    }

    println!("\nWhat the gateway received and delivered:");
    for message in gateway.delivered() {
        let what = match message.kind {
            MessageKind::Template => "template",
            MessageKind::Contact => "contact card",
            _ => message.kind.name(),
        };
        println!(
            "  {}  {:<12} messageId {}",
            message.delivered_at.format("%a %H:%M"),
            what,
            message.message_id
        );
    }
    println!(
        "  free-form messages refused by WhatsApp's rule: {}",
        gateway.refusal_count()
    );
    Ok(())
}

async fn live(args: &[String]) -> Result<()> {
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(to) = value("--to") else {
        return Err("--live needs --to NUMBER (the customer's WhatsApp number)".into());
    };
    let from = value("--from").unwrap_or_else(|| SANDBOX.to_string());
    let chat = Conversation::new(from.parse::<PhoneNumber>()?, to.parse::<PhoneNumber>()?);
    let db = value("--db").unwrap_or_else(|| "quickstart-live.db".to_string());
    let client = Client::from_env()?;
    let messenger = Messenger::new(
        Sessions::new(SledStore::open(&db)?),
        client,
        PolicyConfig::default(),
    );
    if args.iter().any(|a| a == "--customer-wrote") {
        messenger
            .on_inbound(chat, messenger.sessions().now())
            .await?;
        println!("recorded an inbound message from {} now", chat.customer);
    }
    let state = messenger.sessions().state(chat).await?;
    println!("{}: {}", chat, window(&state));
    let result = messenger.send_contact(chat, card()?).await?;
    println!("{}", outcome(&result));
    if let SendOutcome::Rejected { .. } = result {
        println!(
            "The customer must message {} first (sandbox: send your join code), then run again with --customer-wrote.",
            chat.business
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--live") {
        live(&args).await
    } else {
        scripted().await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
