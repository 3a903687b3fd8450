//! Seeded, realistic CRM data: Russian and English companies and people with
//! valid INNs, phones and e-mails, cities, managers and tags; their contact
//! persons, deals, and invoices with lines. The same seed gives the same
//! data, so runs compare.

use serde_json::{json, Value};

/// splitmix64: small, fast and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const RU_FORMS: &[&str] = &["ООО", "АО", "ПАО", "ЗАО"];
const RU_ROOTS: &[&str] = &[
    "Ромашка",
    "Вектор",
    "Северный ветер",
    "Техносфера",
    "Гранит",
    "Альфа-Строй",
    "Сибирские машины",
    "Волга-Логистик",
    "Уральская сталь",
    "Медтехника",
    "Агроинвест",
    "Светоч",
    "Полимерпласт",
    "Балтийский берег",
    "Электросила",
    "Кедр",
    "Радуга",
    "Меридиан",
    "Стройресурс",
    "Фармация",
];
const EN_ROOTS: &[&str] = &[
    "Northwind",
    "Blue Harbor",
    "Acme Tools",
    "Greenfield",
    "Silverline",
    "Atlas Freight",
    "Brightstone",
    "Redwood Labs",
    "Oakridge",
    "Summit Foods",
    "Ironclad",
    "Clearwater",
];
const EN_FORMS: &[&str] = &["Ltd", "LLC", "Inc", "GmbH"];
const RU_FIRST: &[&str] = &[
    "Иван",
    "Пётр",
    "Анна",
    "Мария",
    "Сергей",
    "Ольга",
    "Дмитрий",
    "Елена",
    "Алексей",
    "Наталья",
    "Михаил",
    "Татьяна",
    "Андрей",
    "Юлия",
];
const RU_LAST: &[&str] = &[
    "Иванов",
    "Петров",
    "Сидоров",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Соколов",
    "Лебедев",
    "Козлов",
    "Новиков",
    "Морозов",
    "Волков",
];
const RU_MIDDLE: &[&str] = &[
    "Иванович",
    "Петрович",
    "Сергеевич",
    "Алексеевич",
    "Андреевич",
];
const EN_FIRST: &[&str] = &[
    "John", "Mary", "Peter", "Anna", "James", "Emma", "David", "Laura",
];
const EN_LAST: &[&str] = &[
    "Smith", "Brown", "Taylor", "Wilson", "Clark", "Walker", "Hall",
];
const CITIES: &[(&str, &str)] = &[
    ("Москва", "Центральный"),
    ("Санкт-Петербург", "Северо-Западный"),
    ("Казань", "Приволжский"),
    ("Новосибирск", "Сибирский"),
    ("Екатеринбург", "Уральский"),
    ("Нижний Новгород", "Приволжский"),
    ("Самара", "Приволжский"),
    ("Краснодар", "Южный"),
    ("Владивосток", "Дальневосточный"),
    ("Калининград", "Северо-Западный"),
];
const INDUSTRIES: &[&str] = &[
    "строительство",
    "розница",
    "логистика",
    "производство",
    "IT",
    "медицина",
    "агро",
];
const SOURCES: &[&str] = &[
    "выставка",
    "сайт",
    "рекомендация",
    "холодный звонок",
    "тендер",
];
const MANAGERS: &[&str] = &[
    "ivanov",
    "petrova",
    "sidorov",
    "kuznetsova",
    "smirnov",
    "volkova",
    "popov",
    "lebedeva",
];
const STAGES: &[&str] = &["potential", "one_time", "regular", "lost"];
const IMPORTANCE: &[&str] = &["A", "B", "C"];
const TAGS: &[&str] = &[
    "vip",
    "опт",
    "розница",
    "дилер",
    "госзаказ",
    "экспорт",
    "новый",
];
const POSITIONS: &[&str] = &[
    "генеральный директор",
    "главный бухгалтер",
    "менеджер по закупкам",
    "CTO",
    "head of sales",
];

fn digits(rng: &mut Rng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(10) as u32).collect()
}

fn check_digit(digits: &[u32], weights: &[u32]) -> u32 {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    (sum % 11) % 10
}

/// A valid 10-digit (company) INN.
pub fn company_inn(rng: &mut Rng) -> String {
    let mut d = digits(rng, 9);
    d[0] = 1 + rng.below(9) as u32;
    d.push(check_digit(&d, &[2, 4, 10, 3, 5, 9, 4, 6, 8]));
    d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
}

/// A valid 12-digit (person) INN.
pub fn person_inn(rng: &mut Rng) -> String {
    let mut d = digits(rng, 10);
    d[0] = 1 + rng.below(9) as u32;
    d.push(check_digit(&d, &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]));
    d.push(check_digit(&d, &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]));
    d.iter().map(|x| char::from(b'0' + *x as u8)).collect()
}

/// A Russian mobile number in international form.
pub fn phone(rng: &mut Rng) -> String {
    let operator = rng.pick(&["915", "916", "903", "905", "921", "926", "985"]);
    format!("+7{operator}{:07}", rng.below(10_000_000))
}

/// Latin letters for a name, for e-mail addresses and domains.
fn translit(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        let latin = match c {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'е' | 'ё' => "e",
            'ж' => "zh",
            'з' => "z",
            'и' | 'й' => "i",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' => "u",
            'ф' => "f",
            'х' => "h",
            'ц' => "c",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "sch",
            'ы' => "y",
            'э' => "e",
            'ю' => "yu",
            'я' => "ya",
            _ => "",
        };
        if !latin.is_empty() {
            out.push_str(latin);
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        }
    }
    out
}

/// The `n`-th client of the data set made from `seed`: the same arguments
/// always give the same client, so a run can make any slice of the set.
pub fn client(seed: u64, n: u64) -> Value {
    let mut rng = Rng::new(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let (city, region) = *rng.pick(CITIES);
    let person = rng.chance(15);
    let (name, tax_id, domain) = if person {
        let first = rng.pick(RU_FIRST);
        let last = rng.pick(RU_LAST);
        (
            format!("ИП {last} {first}"),
            person_inn(&mut rng),
            format!("{}{}", translit(last), n),
        )
    } else if rng.chance(20) {
        let root = rng.pick(EN_ROOTS);
        (
            format!("{root} {} {n}", rng.pick(EN_FORMS)),
            company_inn(&mut rng),
            format!("{}{n}", translit(root)),
        )
    } else {
        let root = rng.pick(RU_ROOTS);
        (
            format!("{} «{root}-{n}»", rng.pick(RU_FORMS)),
            company_inn(&mut rng),
            format!("{}{n}", translit(root)),
        )
    };
    let tags: Vec<&str> = (0..rng.below(3)).map(|_| *rng.pick(TAGS)).collect();
    json!({
        "name": name,
        "client_type": if person { "person" } else { "company" },
        "tax_id": tax_id,
        "phone": phone(&mut rng),
        "email": format!("info@{domain}.ru"),
        "website": format!("https://{domain}.ru"),
        "address": format!("{city}, ул. {} д. {}", rng.pick(RU_LAST), 1 + rng.below(150)),
        "city": city,
        "region": region,
        "industry": rng.pick(INDUSTRIES),
        "source": rng.pick(SOURCES),
        "manager": rng.pick(MANAGERS),
        "stage": rng.pick(STAGES),
        "importance": rng.pick(IMPORTANCE),
        "tags": tags,
        "notes": format!("Клиент с {} года; договор №{}", 2005 + rng.below(20), rng.below(100_000)),
    })
}

/// A contact person of `client_id`, the `n`-th of the set.
pub fn contact(seed: u64, n: u64, client_id: &str) -> Value {
    let mut rng = Rng::new(seed ^ 0xC0FFEE ^ n.wrapping_mul(0x9E37_79B9));
    let russian = rng.chance(80);
    let (first, last, middle) = if russian {
        (
            *rng.pick(RU_FIRST),
            *rng.pick(RU_LAST),
            Some(*rng.pick(RU_MIDDLE)),
        )
    } else {
        (*rng.pick(EN_FIRST), *rng.pick(EN_LAST), None)
    };
    json!({
        "client_id": client_id,
        "first_name": first,
        "last_name": last,
        "middle_name": middle,
        "position": rng.pick(POSITIONS),
        "phone": phone(&mut rng),
        "email": format!("{}.{}{n}@example.ru", translit(first), translit(last)),
        "preferred_channel": rng.pick(&["phone", "email", "messenger", "meeting"]),
    })
}

const DEAL_SUBJECTS: &[&str] = &[
    "Поставка оборудования",
    "Годовой контракт на обслуживание",
    "Внедрение учётной системы",
    "Аренда спецтехники",
    "Оптовая поставка",
    "Пилотный проект",
    "Equipment supply",
    "Support renewal",
];
/// The funnel's stages weighted as a funnel: most deals early, few closing.
const DEAL_STAGES: &[&str] = &[
    "evaluation",
    "evaluation",
    "evaluation",
    "preparation",
    "preparation",
    "presentation",
    "presentation",
    "proposal",
    "waiting",
    "contract",
    "closing",
    "won",
    "won",
    "lost",
    "lost",
];
const LOSS_REASONS: &[&str] = &[
    "цена",
    "сроки поставки",
    "выбрали конкурента",
    "нет бюджета",
];
/// Goods and services billed: name, unit, price range in roubles.
const ITEMS: &[(&str, &str, u64, u64)] = &[
    ("Сервер стоечный 2U", "шт", 180_000, 450_000),
    ("Ноутбук 15\"", "шт", 55_000, 140_000),
    ("Монитор 27\"", "шт", 18_000, 45_000),
    ("Лицензия на год", "шт", 9_000, 60_000),
    ("Техническое обслуживание", "мес", 15_000, 90_000),
    ("Консультация специалиста", "ч", 2_500, 6_000),
    ("Доставка", "усл", 1_500, 12_000),
    ("Кабель UTP cat.6", "м", 40, 90),
    ("Бумага А4", "пач", 350, 600),
];

/// A date `days` after 2025-01-01, as `YYYY-MM-DD`.
fn day(days: usize) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
    (start + chrono::Days::new(days as u64))
        .format("%Y-%m-%d")
        .to_string()
}

fn roubles(kopecks: u64) -> Value {
    json!({"minor": kopecks, "currency": "RUB"})
}

/// The `n`-th deal of the set, of client `client_id`.
pub fn deal(seed: u64, n: u64, client_id: &str) -> Value {
    let mut rng = Rng::new(seed ^ 0xDEA1 ^ n.wrapping_mul(0x5851_F42D_4C95_7F2D));
    let stage = *rng.pick(DEAL_STAGES);
    let probability = match stage {
        "won" => 100,
        "lost" => 0,
        _ => 10 + 10 * rng.below(9),
    };
    json!({
        "client_id": client_id,
        "title": format!("{} №{}", rng.pick(DEAL_SUBJECTS), n + 1),
        "stage": stage,
        "amount": roubles(100 * (10_000 + rng.below(5_000_000) as u64)),
        "probability": probability,
        "expected_close": day(rng.below(700)),
        "source": rng.pick(SOURCES),
        "manager": rng.pick(MANAGERS),
        "loss_reason": (stage == "lost").then(|| *rng.pick(LOSS_REASONS)),
    })
}

/// The lines of the `n`-th invoice (1 to 5), without their invoice's id.
pub fn invoice_lines(seed: u64, n: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed ^ 0x11AE ^ n.wrapping_mul(0x2127_599B_F432_5C37));
    let count = 1 + rng.below(5);
    (0..count)
        .map(|i| {
            let (item, unit, low, high) = *rng.pick(ITEMS);
            let quantity = 1 + rng.below(if unit == "м" { 500 } else { 10 }) as u64;
            let price = 100 * (low + rng.next_u64() % (high - low + 1));
            json!({
                "position": i + 1,
                "item": item,
                "quantity": quantity,
                "unit": unit,
                "price": roubles(price),
                "amount": roubles(price * quantity),
            })
        })
        .collect()
}

/// The `n`-th invoice of the set, for client `client_id` (and the deal it
/// closes, if any); its total is the sum of [`invoice_lines`]`(seed, n)`,
/// and its number, `СЧ-0000001` on, gives `n` back.
pub fn invoice(seed: u64, n: u64, client_id: &str, deal_id: Option<&str>) -> Value {
    let mut rng = Rng::new(seed ^ 0x1A01 ^ n.wrapping_mul(0x9FB2_1C65_1E98_DF25));
    let total: u64 = invoice_lines(seed, n)
        .iter()
        .filter_map(|line| line["amount"]["minor"].as_u64())
        .sum();
    let issued = rng.below(600);
    let status = *rng.pick(&[
        "draft",
        "issued",
        "issued",
        "partially_paid",
        "paid",
        "paid",
        "paid",
        "cancelled",
    ]);
    let paid = match status {
        "paid" => Some(total),
        "partially_paid" => Some(total / 2),
        _ => None,
    };
    let paid_on = paid.map(|_| day(issued + 1 + rng.below(30)));
    json!({
        "number": invoice_number(n),
        "client_id": client_id,
        "deal_id": deal_id,
        "issued_on": day(issued),
        "due_on": day(issued + 10),
        "status": status,
        "total": roubles(total),
        "paid": paid.map(roubles),
        "paid_on": paid_on,
        "shipped_on": (status == "paid").then(|| day(issued + 2 + rng.below(20))),
        "manager": rng.pick(MANAGERS),
    })
}

/// The number of the `n`-th invoice.
pub fn invoice_number(n: u64) -> String {
    format!("СЧ-{:07}", n + 1)
}

/// The `n` of an invoice number made by [`invoice_number`].
pub fn invoice_index(number: &str) -> Option<u64> {
    number
        .strip_prefix("СЧ-")?
        .parse::<u64>()
        .ok()?
        .checked_sub(1)
}

/// Words that occur in generated names, for search queries.
pub fn search_terms() -> Vec<&'static str> {
    let mut terms: Vec<&str> = RU_ROOTS.iter().chain(EN_ROOTS).copied().collect();
    terms.extend(RU_LAST);
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inn_valid(inn: &str) -> bool {
        let d: Vec<u32> = inn.chars().filter_map(|c| c.to_digit(10)).collect();
        match d.len() {
            10 => check_digit(&d[..9], &[2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[9],
            12 => {
                check_digit(&d[..10], &[7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[10]
                    && check_digit(&d[..11], &[3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == d[11]
            }
            _ => false,
        }
    }

    #[test]
    fn data_is_deterministic_and_valid() {
        assert_eq!(client(7, 42), client(7, 42));
        assert_ne!(client(7, 42), client(7, 43));
        for n in 0..500 {
            let c = client(1, n);
            let inn = c["tax_id"].as_str().expect("tax id");
            assert!(inn_valid(inn), "{inn}");
            let expected = if c["client_type"] == "person" { 12 } else { 10 };
            assert_eq!(inn.len(), expected);
            assert!(c["email"].as_str().is_some_and(|e| e.contains('@')));
        }
        assert_eq!(translit("Ромашка"), "romashka");
        assert_eq!(translit("Acme Tools"), "acmetools");
    }

    #[test]
    fn an_invoice_totals_its_lines_and_its_number_gives_it_back() {
        for n in [0, 1, 99, 123_456] {
            let lines = invoice_lines(5, n);
            assert!((1..=5).contains(&lines.len()));
            for line in &lines {
                let price = line["price"]["minor"].as_u64().expect("price");
                let quantity = line["quantity"].as_u64().expect("quantity");
                assert_eq!(line["amount"]["minor"].as_u64(), Some(price * quantity));
            }
            let sum: u64 = lines
                .iter()
                .filter_map(|l| l["amount"]["minor"].as_u64())
                .sum();
            let invoice = invoice(5, n, "c", None);
            assert_eq!(invoice["total"]["minor"].as_u64(), Some(sum));
            let number = invoice["number"].as_str().expect("number");
            assert_eq!(invoice_index(number), Some(n));
        }
        assert_eq!(invoice_index("INV-1"), None);
        let won = (0..200)
            .map(|n| deal(5, n, "c"))
            .find(|d| d["stage"] == "won");
        assert_eq!(won.map(|d| d["probability"].clone()), Some(json!(100)));
    }
}
