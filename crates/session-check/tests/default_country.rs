//! `--default-country CC` (or `$SESSION_CHECK_DEFAULT_COUNTRY`): national numbers in every
//! phone argument take that country, before or after the command; without it a national
//! number is refused with a message naming the option.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BUSINESS, CUSTOMER_DIGITS, Cli};

#[test]
fn national_numbers_take_the_default_country_before_or_after_the_command() {
    let cli = Cli::new();
    cli.run(&[
        "record",
        BUSINESS,
        "0712 345 678",
        "--default-country",
        "254",
    ])
    .expect(0);
    // The same key as the international number, whichever way it is written.
    cli.run(&["status", BUSINESS, CUSTOMER_DIGITS]).expect(0);
    cli.run(&[
        "--default-country",
        "+254",
        "status",
        BUSINESS,
        "712 345 678",
    ])
    .expect(0);
    cli.run(&["status", BUSINESS, "+254 (0) 712 345 678"])
        .expect(0);
    let listed = cli.run(&["list", "--json"]).expect(0).json_lines();
    assert_eq!(listed.len(), 1, "one person, one conversation: {listed:?}");
}

#[test]
fn the_environment_gives_the_default_country() {
    let mut cli = Cli::new();
    cli.env("SESSION_CHECK_DEFAULT_COUNTRY", "1");
    cli.run(&["record", BUSINESS, "(650) 555-1234"]).expect(0);
    cli.env_remove("SESSION_CHECK_DEFAULT_COUNTRY");
    cli.run(&["status", BUSINESS, "16505551234"]).expect(0);
    // Without a default country, the same spelling is another number.
    cli.run(&["status", BUSINESS, "(650) 555-1234"]).expect(1);
}

#[test]
fn a_national_number_without_a_default_country_names_the_option() {
    let cli = Cli::new();
    cli.run(&["record", BUSINESS, "0712 345 678"])
        .expect_error(&["starts with 0", "--default-country"]);
    cli.run(&[
        "record",
        BUSINESS,
        CUSTOMER_DIGITS,
        "--default-country",
        "2545",
    ])
    .expect_error(&["country calling code"]);
    cli.run(&[
        "record",
        BUSINESS,
        CUSTOMER_DIGITS,
        "--default-country",
        "999",
    ])
    .expect_error(&["no country has the calling code 999"]);
}
