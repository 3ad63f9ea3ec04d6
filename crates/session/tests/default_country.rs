//! The engine reads numbers people write with its default country.

#![allow(clippy::unwrap_used)] // Tests panic on unexpected errors.

use lipachat_session::{Conversation, PhoneParser, Sessions, SledStore};

fn chat() -> Conversation {
    Conversation::parse("254110090747", "254712345678").unwrap()
}

#[tokio::test]
async fn the_engine_reads_people_s_numbers_with_its_default_country() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::new(SledStore::open(dir.path().join("db")).unwrap())
        .with_default_country(PhoneParser::with_default_country("254").unwrap());
    assert_eq!(
        sessions
            .conversation("0110 090 747", "0712 345 678")
            .unwrap(),
        chat()
    );
    let plain = Sessions::new(SledStore::open(dir.path().join("db2")).unwrap());
    assert!(plain.conversation("0110 090 747", "0712 345 678").is_err());
}
