//! Seeded, realistic CRM data: Russian and English companies and people with
//! valid INNs, phones and e-mails, cities, managers and tags. The same seed
//! gives the same data, so runs compare.

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
}
