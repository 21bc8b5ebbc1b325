//! Test payment methods decide a confirmation the way Stripe's test mode does: the
//! `pm_card_*` ids (`pm_card_visa`, `pm_card_visa_chargeDeclined`,
//! `pm_card_chargeDeclinedInsufficientFunds`, ...) and the test card numbers
//! (`4242424242424242`, `4000000000000002`, `4000000000009995`, ...).

/// What confirming with a payment method does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    Approve,
    /// A card error: Stripe's `code`, `decline_code` (for `card_declined`) and message.
    Decline {
        code: &'static str,
        decline_code: Option<&'static str>,
        message: &'static str,
    },
}

const DECLINED: &str = "Your card was declined.";

fn declined(decline_code: &'static str, message: &'static str) -> Card {
    Card::Decline {
        code: "card_declined",
        decline_code: Some(decline_code),
        message,
    }
}

/// The outcome for a test card number (spaces allowed); an unknown number is declined as
/// Stripe's test mode declines a real card.
pub fn by_number(number: &str) -> Card {
    let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    match digits.as_str() {
        "4242424242424242" | "4000056655665556" | "5555555555554444" | "2223003122003222"
        | "5200828282828210" | "378282246310005" | "6011111111111117" | "3056930009020004"
        | "6200000000000005" => Card::Approve,
        "4000000000000002" => declined("generic_decline", DECLINED),
        "4000000000009995" => declined("insufficient_funds", "Your card has insufficient funds."),
        "4000000000009987" => declined("lost_card", DECLINED),
        "4000000000009979" => declined("stolen_card", DECLINED),
        "4100000000000019" => declined("fraudulent", DECLINED),
        "4000000000000069" => Card::Decline {
            code: "expired_card",
            decline_code: None,
            message: "Your card has expired.",
        },
        "4000000000000127" => Card::Decline {
            code: "incorrect_cvc",
            decline_code: None,
            message: "Your card's security code is incorrect.",
        },
        "4000000000000119" => Card::Decline {
            code: "processing_error",
            decline_code: None,
            message: "An error occurred while processing your card. Try again in a little bit.",
        },
        _ => declined(
            "test_mode_live_card",
            "Your card was declined. Your request was in test mode, but used a non test card.",
        ),
    }
}

/// The outcome for a payment method id, `None` for an id that is not a test payment method
/// (`No such PaymentMethod`). `pm_card_<digits>` is the method made from a card number
/// given as `payment_method_data[card][number]`.
pub fn by_id(id: &str) -> Option<Card> {
    let rest = id.strip_prefix("pm_card_")?;
    if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
        return Some(by_number(rest));
    }
    let brands = [
        "visa_debit",
        "visa",
        "mastercard_debit",
        "mastercard_prepaid",
        "mastercard",
        "amex",
        "discover",
        "diners",
        "jcb",
        "unionpay",
        "us",
    ];
    // `pm_card_visa`, or a brand-less or branded decline (`pm_card_visa_chargeDeclined`).
    if brands.contains(&rest) {
        return Some(Card::Approve);
    }
    let outcome = brands
        .iter()
        .find_map(|b| rest.strip_prefix(b).and_then(|r| r.strip_prefix('_')))
        .unwrap_or(rest);
    Some(match outcome {
        "chargeDeclined" => declined("generic_decline", DECLINED),
        "chargeDeclinedInsufficientFunds" => {
            declined("insufficient_funds", "Your card has insufficient funds.")
        }
        "chargeDeclinedFraudulent" => declined("fraudulent", DECLINED),
        "chargeDeclinedLostCard" => declined("lost_card", DECLINED),
        "chargeDeclinedStolenCard" => declined("stolen_card", DECLINED),
        "chargeDeclinedExpiredCard" => by_number("4000000000000069"),
        "chargeDeclinedIncorrectCvc" => by_number("4000000000000127"),
        "chargeDeclinedProcessingError" => by_number("4000000000000119"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented test methods and numbers decide as Stripe's test mode does; other
    /// ids are unknown.
    #[test]
    fn test_methods_decide_like_test_mode() {
        assert_eq!(by_id("pm_card_visa"), Some(Card::Approve));
        assert_eq!(by_id("pm_card_mastercard"), Some(Card::Approve));
        let code = |card: Option<Card>| match card {
            Some(Card::Decline {
                code, decline_code, ..
            }) => Some((code, decline_code)),
            _ => None,
        };
        assert_eq!(
            code(by_id("pm_card_visa_chargeDeclined")),
            Some(("card_declined", Some("generic_decline")))
        );
        assert_eq!(
            code(by_id("pm_card_chargeDeclinedInsufficientFunds")),
            Some(("card_declined", Some("insufficient_funds")))
        );
        assert_eq!(
            code(by_id("pm_card_visa_chargeDeclinedInsufficientFunds")),
            Some(("card_declined", Some("insufficient_funds")))
        );
        assert_eq!(by_id("pm_card_4242424242424242"), Some(Card::Approve));
        assert_eq!(
            code(Some(by_number("4000 0000 0000 9995"))),
            Some(("card_declined", Some("insufficient_funds")))
        );
        assert_eq!(
            code(Some(by_number("4000000000000002"))),
            Some(("card_declined", Some("generic_decline")))
        );
        assert_eq!(by_id("pm_1Abc"), None);
        assert_eq!(by_id("pm_card_visa_somethingElse"), None);
        assert_eq!(by_id("pm_card_"), None);
    }
}
