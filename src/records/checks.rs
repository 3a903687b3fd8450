//! Rules for values with an outside meaning: Russian taxpayer numbers,
//! phone numbers, e-mail addresses.

use phonenumber::country::Id as Country;

use super::invalid::{ErrorCode, Invalid};

/// Region assumed for phone numbers written without a country code: the
/// reference users are Russian offices, where `8 912 ...` means `+7 912 ...`.
const DEFAULT_PHONE_REGION: Country = Country::RU;

/// Checks a Russian INN: 10 digits for a legal entity, 12 for a person, with
/// check digits. Returns the length category on success.
pub fn check_inn(inn: &str) -> Result<InnKind, Invalid> {
    let digits: Vec<u32> = inn.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != inn.len() {
        return Err(Invalid::new(ErrorCode::InnDigits, "an INN is digits only"));
    }
    let checksum = |message: &str| Invalid::new(ErrorCode::InnChecksum, message);
    let check = |weights: &[u32], at: usize| {
        let sum: u32 = weights.iter().zip(&digits).map(|(w, d)| w * d).sum();
        sum % 11 % 10 == digits[at]
    };
    match digits.len() {
        10 => {
            if check(&[2, 4, 10, 3, 5, 9, 4, 6, 8], 9) {
                Ok(InnKind::Company)
            } else {
                Err(checksum("the INN's check digit is wrong"))
            }
        }
        12 => {
            if check(&[7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 10)
                && check(&[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8], 11)
            {
                Ok(InnKind::Person)
            } else {
                Err(checksum("the INN's check digits are wrong"))
            }
        }
        _ => Err(Invalid::new(
            ErrorCode::InnLength,
            "an INN has 10 digits (company) or 12 (person)",
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnKind {
    Company,
    Person,
}

impl InnKind {
    /// The `client_type` value this INN length belongs to.
    pub fn client_type(self) -> &'static str {
        match self {
            InnKind::Company => "company",
            InnKind::Person => "person",
        }
    }
}

/// The phone number as digits with country code (E.164 without `+`), or
/// `None` when it is not a valid number.
///
/// Parsing a number runs the metadata's regular expressions, and one
/// record asks for the same number up to three times in a row (checking
/// the input, its filter column, its search words): each thread remembers
/// its last few answers.
pub fn normalize_phone(phone: &str) -> Option<String> {
    const REMEMBERED: usize = 4;
    thread_local! {
        static RECENT: std::cell::RefCell<std::collections::VecDeque<(String, Option<String>)>> =
            const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    }
    if let Some(known) = RECENT.with_borrow(|recent| {
        recent
            .iter()
            .find(|(input, _)| input == phone)
            .map(|(_, answer)| answer.clone())
    }) {
        return known;
    }
    let answer = parse_phone(phone);
    RECENT.with_borrow_mut(|recent| {
        if recent.len() == REMEMBERED {
            recent.pop_back();
        }
        recent.push_front((phone.to_owned(), answer.clone()));
    });
    answer
}

fn parse_phone(phone: &str) -> Option<String> {
    let number = phonenumber::parse(Some(DEFAULT_PHONE_REGION), phone).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(e164_digits(&number))
}

/// E.164 without its `+`: the country code, then the national number with
/// its leading zeros. The crate's formatter writes the same, but matches
/// the national formats' patterns first, which E.164 never uses (a
/// twentieth of preparing an imported row).
fn e164_digits(number: &phonenumber::PhoneNumber) -> String {
    format!("{}{}", number.country().code(), number.national())
}

/// The digits of a phone number as typed, with `8` read as `7` in front of a
/// Russian trunk number: what a prefix filter compares with.
pub fn phone_digits(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix('8') {
        Some(rest) if digits.len() == 11 => format!("7{rest}"),
        _ => digits,
    }
}

pub fn is_valid_email(email: &str) -> bool {
    email.len() <= 254
        && email_address::EmailAddress::parse_with_options(
            email,
            email_address::Options::default().without_display_text(),
        )
        .is_ok_and(|e| e.domain().contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inn_table() {
        let cases = [
            ("7707083893", Ok(InnKind::Company)),
            ("500100732259", Ok(InnKind::Person)),
            ("7707083894", Err(())),
            ("500100732258", Err(())),
            ("770708389", Err(())),
            ("77070838931", Err(())),
            ("77070838a3", Err(())),
            ("", Err(())),
        ];
        for (inn, expected) in cases {
            assert_eq!(check_inn(inn).map_err(|_| ()), expected, "{inn}");
        }
        let code = |inn| check_inn(inn).map_err(|e| e.code).err();
        assert_eq!(code("7707083894"), Some(ErrorCode::InnChecksum));
        assert_eq!(code("770708389"), Some(ErrorCode::InnLength));
        assert_eq!(code("77070838a3"), Some(ErrorCode::InnDigits));
    }

    #[test]
    fn phones_normalize_to_digits_with_country_code() {
        for phone in [
            "+7 (912) 345-67-89",
            "8 912 345 67 89",
            "89123456789",
            "+79123456789",
        ] {
            assert_eq!(
                normalize_phone(phone).as_deref(),
                Some("79123456789"),
                "{phone}"
            );
        }
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("442079460958")
        );
        for bad in ["12", "hello", "+7 000", ""] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
        assert_eq!(phone_digits("8 (912)"), "8912");
        assert_eq!(phone_digits("8 912 345 67 89"), "79123456789");
    }

    /// The digits as the crate's own E.164 formatter writes them, for
    /// numbers of several countries, an Italian one with its leading zero
    /// among them.
    #[test]
    fn e164_digits_are_what_the_formatter_writes() {
        for phone in [
            "+7 912 345-67-89",
            "8 (495) 123-45-67",
            "+1 650 253 0000",
            "+44 20 7946 0958",
            "+39 06 6988 0000",
            "+49 30 901820",
            "+86 10 6552 9988",
            "+375 17 222 22 22",
        ] {
            let number = phonenumber::parse(Some(DEFAULT_PHONE_REGION), phone).expect("parses");
            assert!(phonenumber::is_valid(&number), "{phone}");
            let formatted = number.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(format!("+{}", e164_digits(&number)), formatted, "{phone}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_valid_email("ivan@example.ru"));
        assert!(is_valid_email("Ivan.Petrov+crm@Example.COM"));
        for bad in [
            "ivan",
            "ivan@",
            "@example.ru",
            "ivan@localhost",
            "a b@example.ru",
            "Ivan <i@example.ru>",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
