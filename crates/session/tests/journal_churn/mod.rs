//! One step of the churn the outcome journal's attack tests run beside their writers:
//! the operations that unpack the journal, move customers, erase, prune, flush and count.

use lipachat_session::{
    Conversation, Customer, IdentityStore, OutboxStore, PhoneNumber, SledStore, WindowStore,
};

/// Two customers a churn moves between: the phone numbers `first` and `first + 1`.
pub fn customers(first: u64) -> (Customer, Customer) {
    let phone = |n| Customer::Phone(PhoneNumber::from_u64(n).unwrap());
    (phone(first), phone(first + 1))
}

/// Step `i` of the churn on `store`: by `i % 6`, the outcomes of `unpacked` (an unpack of
/// the journal), a move of `customers` from the first to the second of `business`, the
/// move back, an erasure of `erased`, a prune, or a flush; then a count of the stored
/// outcomes. Panics on any error (a test's failure).
pub fn churn_step(
    rt: &tokio::runtime::Runtime,
    store: &SledStore,
    i: u64,
    business: PhoneNumber,
    customers: (Customer, Customer),
    unpacked: Conversation,
    erased: Conversation,
) {
    let (a, b) = customers;
    match i % 6 {
        0 => drop(rt.block_on(store.outcomes(unpacked)).unwrap()),
        1 => drop(rt.block_on(store.move_customer(business, a, b)).unwrap()),
        2 => drop(rt.block_on(store.move_customer(business, b, a)).unwrap()),
        3 => drop(rt.block_on(store.forget(erased)).unwrap()),
        4 => drop(store.prune_outcomes().unwrap()),
        _ => rt.block_on(WindowStore::flush(store)).unwrap(),
    }
    store.stored_outcomes().unwrap();
}
