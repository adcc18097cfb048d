//! The simulated district's true state: people and their families, officials and
//! enterprises, and the scenario cases planted among them. Department exports are views
//! of this world, with the mess real exports have.

use std::collections::HashSet;

use jiff::civil::Date;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use tongchou_ids::{citizen_id, credit_code};

use crate::scale::Sizes;
use crate::vocab::{self, COMMUNITIES, ROADS, TOWNS};

/// The day the simulated exports are taken: the seed article's count date.
pub fn export_day() -> Date {
    Date::constant(2015, 6, 9)
}

pub type PersonIx = u32;

#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub male: bool,
    pub birth: Date,
    pub father: Option<PersonIx>,
    pub mother: Option<PersonIx>,
    pub spouse: Option<PersonIx>,
    pub married_on: Option<Date>,
    pub household: u32,
    pub relation: &'static str,
    pub town: u8,
    pub address: String,
    pub phone: String,
    pub ethnic: &'static str,
}

#[derive(Debug, Clone)]
pub struct Enterprise {
    pub code: String,
    pub name: String,
    pub industry: usize,
    pub legal_rep: PersonIx,
    pub address: String,
    pub town: u8,
    pub capital_wan: u32,
    pub established: Date,
    pub status: &'static str,
    pub employees: u32,
    pub phone: String,
    /// Quarterly revenue in yuan, the base of tax and electricity.
    pub quarterly_revenue: f64,
    /// Arrears of social insurance: first unpaid month index and number of months.
    pub arrears: Option<(u32, u32)>,
    /// Share of the true tax that is declared: 1.0, or far less for planted outliers.
    pub tax_declared_share: f64,
}

#[derive(Debug, Clone)]
pub struct Official {
    pub person: PersonIx,
    pub unit: usize,
    pub position: &'static str,
    pub hired: Date,
}

/// A planted 'relative suddenly owns properties' case: the relative's new properties.
#[derive(Debug, Clone)]
pub struct PropertySurge {
    pub official: usize,
    pub wife: PersonIx,
    pub relative: PersonIx,
    pub dates: Vec<Date>,
}

#[derive(Debug, Clone)]
pub struct Hotspot {
    pub lat: f64,
    pub lon: f64,
    pub town: u8,
    pub community: &'static str,
    pub sightings: usize,
}

#[derive(Debug, Clone)]
pub struct MacauTraveller {
    pub official: usize,
    pub trips: u32,
}

/// A planted disagreement: one source holds a wrong value of one enterprise attribute.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub enterprise: usize,
    pub attribute: ConflictAttribute,
    /// 0: market regulation registry, 1: quality supervision, 2: social-insurance employers.
    pub wrong_source: usize,
    pub wrong_value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictAttribute {
    LegalRep,
    Address,
    Phone,
}

impl ConflictAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictAttribute::LegalRep => "legal_representative",
            ConflictAttribute::Address => "address",
            ConflictAttribute::Phone => "phone",
        }
    }
}

pub struct World {
    pub persons: Vec<Person>,
    /// Children of each person as mother, in birth order.
    pub children: Vec<Vec<PersonIx>>,
    pub enterprises: Vec<Enterprise>,
    pub officials: Vec<Official>,
    pub funding_applicants: Vec<(usize, Date)>,
    pub surges: Vec<PropertySurge>,
    pub hotspots: Vec<Hotspot>,
    pub macau: Vec<MacauTraveller>,
    pub conflicts: Vec<Conflict>,
    /// Inspection report numbers' fakes: (report index, typed licence, kind, true code).
    pub fake_licences: Vec<FakeLicence>,
    pub inspection_reports: usize,
    pub vendor_background: usize,
}

#[derive(Debug, Clone)]
pub struct FakeLicence {
    pub report: usize,
    pub typed: String,
    pub kind: &'static str,
    pub true_code: Option<String>,
}

impl World {
    pub fn person(&self, ix: PersonIx) -> &Person {
        &self.persons[ix as usize]
    }

    pub fn is_adult(&self, ix: PersonIx) -> bool {
        self.person(ix).birth.year() <= 1997
    }
}

pub fn pick_weighted<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(item, w) in items {
        if roll < w {
            return item;
        }
        roll -= w;
    }
    items[items.len() - 1].0
}

pub fn random_date(rng: &mut ChaCha8Rng, from: Date, to: Date) -> Date {
    let days = (to - from).get_days().max(1);
    from.checked_add(jiff::Span::new().days(rng.random_range(0..days)))
        .expect("date in range")
}

pub fn chinese_name(rng: &mut ChaCha8Rng, surname: &str, male: bool) -> String {
    let pool: Vec<char> = if male {
        vocab::MALE_GIVEN
    } else {
        vocab::FEMALE_GIVEN
    }
    .chars()
    .collect();
    let mut name = surname.to_string();
    for _ in 0..if rng.random_bool(0.8) { 2 } else { 1 } {
        name.push(*pool.choose(rng).expect("pool"));
    }
    name
}

pub fn mobile(rng: &mut ChaCha8Rng) -> String {
    const PREFIXES: [&str; 10] = [
        "133", "135", "137", "138", "139", "150", "158", "186", "189", "136",
    ];
    format!(
        "{}{:08}",
        PREFIXES.choose(rng).expect("prefix"),
        rng.random_range(0..100_000_000u32)
    )
}

pub fn street_address(rng: &mut ChaCha8Rng, town: u8) -> String {
    let community = COMMUNITIES[town as usize].choose(rng).expect("community");
    let road = ROADS.choose(rng).expect("road");
    format!(
        "佛山市南海区{}{}{}{}号",
        TOWNS[town as usize],
        community,
        road,
        rng.random_range(1..400)
    )
}

struct Builder<'r> {
    rng: &'r mut ChaCha8Rng,
    persons: Vec<Person>,
    children: Vec<Vec<PersonIx>>,
    ids: HashSet<String>,
    households: u32,
}

impl Builder<'_> {
    fn new_person(&mut self, surname: &str, male: bool, birth: Date) -> PersonIx {
        let region = pick_weighted(self.rng, &vocab::BIRTH_REGIONS);
        let id = loop {
            let seq = self.rng.random_range(0..500) * 2 + u32::from(male);
            let id = citizen_id::build(
                region,
                birth.year() as u32,
                birth.month() as u32,
                birth.day() as u32,
                seq,
            );
            if self.ids.insert(id.clone()) {
                break id;
            }
        };
        let name = chinese_name(self.rng, surname, male);
        let town = self.rng.random_range(0..TOWNS.len() as u8);
        let person = Person {
            id,
            name,
            male,
            birth,
            father: None,
            mother: None,
            spouse: None,
            married_on: None,
            household: 0,
            relation: "户主",
            town,
            address: String::new(),
            phone: mobile(self.rng),
            ethnic: pick_weighted(self.rng, &vocab::ETHNIC),
        };
        self.persons.push(person);
        self.children.push(Vec::new());
        (self.persons.len() - 1) as PersonIx
    }

    fn surname(&mut self) -> &'static str {
        pick_weighted(self.rng, &vocab::SURNAMES)
    }

    fn birth_in(&mut self, from_year: i16, to_year: i16) -> Date {
        random_date(
            self.rng,
            Date::new(from_year, 1, 1).expect("date"),
            Date::new(to_year, 12, 28).expect("date"),
        )
    }

    fn marry(&mut self, husband: PersonIx, wife: PersonIx) {
        let younger = self.persons[husband as usize]
            .birth
            .max(self.persons[wife as usize].birth);
        let from = younger
            .checked_add(jiff::Span::new().years(22))
            .expect("date");
        let to = younger
            .checked_add(jiff::Span::new().years(30))
            .expect("date")
            .min(export_day());
        let on = random_date(self.rng, from.min(to), to);
        for (a, b) in [(husband, wife), (wife, husband)] {
            self.persons[a as usize].spouse = Some(b);
            self.persons[a as usize].married_on = Some(on);
        }
    }

    fn children(&mut self, father: PersonIx, mother: PersonIx, count: usize, latest_year: i16) {
        let surname: String = self.persons[father as usize].name.chars().take(1).collect();
        let mother_birth = self.persons[mother as usize].birth.year();
        for _ in 0..count {
            let from = mother_birth + 21;
            let to = (mother_birth + 38).min(latest_year);
            if from > to {
                return;
            }
            let male = self.rng.random_bool(0.52);
            let birth = self.birth_in(from, to);
            let child = self.new_person(&surname, male, birth);
            self.persons[child as usize].father = Some(father);
            self.persons[child as usize].mother = Some(mother);
            self.children[mother as usize].push(child);
        }
    }

    /// Puts a head, spouse and unmarried children in one household at one address.
    fn household(&mut self, head: PersonIx) {
        self.households += 1;
        let household = self.households;
        let town = self.persons[head as usize].town;
        let address = street_address(self.rng, town);
        let spouse = self.persons[head as usize].spouse;
        let mut members = vec![(head, "户主")];
        if let Some(s) = spouse {
            members.push((s, "配偶"));
        }
        let mother = if self.persons[head as usize].male {
            spouse
        } else {
            Some(head)
        };
        if let Some(mother) = mother {
            let kids: Vec<PersonIx> = self.children[mother as usize]
                .iter()
                .copied()
                .filter(|&c| self.persons[c as usize].spouse.is_none())
                .collect();
            for kid in kids {
                let relation = if self.persons[kid as usize].male {
                    "子"
                } else {
                    "女"
                };
                members.push((kid, relation));
            }
        }
        for (member, relation) in members {
            let p = &mut self.persons[member as usize];
            p.household = household;
            p.relation = relation;
            p.town = town;
            p.address = address.clone();
        }
    }
}

/// Builds the district's people in three generations so that parents, siblings and
/// in-laws can be derived from household and marriage records.
fn people(rng: &mut ChaCha8Rng, target: usize) -> (Vec<Person>, Vec<Vec<PersonIx>>) {
    let mut b = Builder {
        rng,
        children: Vec::with_capacity(target + target / 10),
        persons: Vec::with_capacity(target + target / 10),
        ids: HashSet::with_capacity(target + target / 10),
        households: 0,
    };
    let mut elder_couples = Vec::new();
    while b.persons.len() < target * 45 / 100 {
        let surname = b.surname();
        let husband_birth = b.birth_in(1935, 1962);
        let husband = b.new_person(surname, true, husband_birth);
        let wife_surname = b.surname();
        let wife_year = (husband_birth.year() + b.rng.random_range(-1..5)).min(1964);
        let wife_birth = b.birth_in(wife_year, wife_year);
        let wife = b.new_person(wife_surname, false, wife_birth);
        b.marry(husband, wife);
        let kids = pick_weighted(b.rng, &[(1usize, 25), (2, 40), (3, 25), (4, 10)]);
        b.children(husband, wife, kids, 1996);
        elder_couples.push(husband);
    }
    let middle_end = b.persons.len() as PersonIx;
    let (mut men, mut women): (Vec<PersonIx>, Vec<PersonIx>) = (0..middle_end)
        .filter(|&i| {
            b.persons[i as usize].father.is_some() && b.persons[i as usize].birth.year() <= 1992
        })
        .partition(|&i| b.persons[i as usize].male);
    men.shuffle(b.rng);
    women.shuffle(b.rng);
    men.sort_by_key(|&i| b.persons[i as usize].birth);
    women.sort_by_key(|&i| b.persons[i as usize].birth);
    let mut young_couples = Vec::new();
    for (&m, &w) in men.iter().zip(women.iter()) {
        let same_parents = b.persons[m as usize].mother == b.persons[w as usize].mother;
        if same_parents || !b.rng.random_bool(0.85) {
            continue;
        }
        b.marry(m, w);
        let kids = pick_weighted(b.rng, &[(0usize, 15), (1, 45), (2, 35), (3, 5)]);
        b.children(m, w, kids, 2015);
        young_couples.push(m);
    }
    while b.persons.len() < target {
        let surname = b.surname();
        let male = b.rng.random_bool(0.55);
        let birth = b.birth_in(1965, 1995);
        b.new_person(surname, male, birth);
    }
    let migrants_from = middle_end as usize;
    for head in elder_couples.into_iter().chain(young_couples) {
        b.household(head);
    }
    for ix in 0..b.persons.len() {
        if b.persons[ix].household == 0 && (ix >= migrants_from || b.persons[ix].spouse.is_none()) {
            b.household(ix as PersonIx);
        }
    }
    (b.persons, b.children)
}

fn enterprise_name(rng: &mut ChaCha8Rng, industry: usize, taken: &mut HashSet<String>) -> String {
    let trade: Vec<char> = vocab::TRADE_NAMES.chars().collect();
    loop {
        let a = *trade.choose(rng).expect("trade");
        let c = *trade.choose(rng).expect("trade");
        let suffix = pick_weighted(
            rng,
            &[
                (vocab::COMPANY_SUFFIXES[0], 80),
                (vocab::COMPANY_SUFFIXES[1], 15),
                (vocab::COMPANY_SUFFIXES[2], 5),
            ],
        );
        let name = format!(
            "佛山市南海区{a}{c}{}{suffix}",
            vocab::INDUSTRIES[industry].0
        );
        if taken.insert(name.clone()) {
            return name;
        }
        if taken.len() > 20_000 {
            let numbered = format!(
                "佛山市南海区{a}{c}{}{}号{suffix}",
                vocab::INDUSTRIES[industry].0,
                taken.len()
            );
            taken.insert(numbered.clone());
            return numbered;
        }
    }
}

pub fn random_credit_code(rng: &mut ChaCha8Rng) -> String {
    let mut body = [0u8; 8];
    for b in &mut body {
        *b = *credit_code::CHARSET.choose(rng).expect("charset");
    }
    credit_code::build("91", vocab::DISTRICT_REGION, &body)
}

fn enterprises(rng: &mut ChaCha8Rng, persons: &[Person], count: usize) -> Vec<Enterprise> {
    let adults: Vec<PersonIx> = (0..persons.len() as PersonIx)
        .filter(|&i| (1950..=1990).contains(&persons[i as usize].birth.year()))
        .collect();
    let mut codes = HashSet::with_capacity(count);
    let mut names = HashSet::with_capacity(count);
    (0..count)
        .map(|_| {
            let code = loop {
                let code = random_credit_code(rng);
                if codes.insert(code.clone()) {
                    break code;
                }
            };
            let industry = rng.random_range(0..vocab::INDUSTRIES.len());
            let town = rng.random_range(0..TOWNS.len() as u8);
            let employees = (rng.random::<f64>().powi(3) * 800.0) as u32 + 3;
            Enterprise {
                code,
                name: enterprise_name(rng, industry, &mut names),
                industry,
                legal_rep: *adults.choose(rng).expect("adults"),
                address: street_address(rng, town),
                town,
                capital_wan: [50, 100, 200, 500, 1000, 3000][rng.random_range(0..6)],
                established: random_date(
                    rng,
                    Date::constant(1995, 1, 1),
                    Date::constant(2014, 12, 31),
                ),
                status: pick_weighted(rng, &[("存续", 92), ("注销", 5), ("吊销", 3)]),
                employees,
                phone: if rng.random_bool(0.5) {
                    mobile(rng)
                } else {
                    format!("0757-8{:07}", rng.random_range(0..10_000_000))
                },
                quarterly_revenue: f64::from(employees) * rng.random_range(40_000.0..90_000.0),
                arrears: None,
                tax_declared_share: 1.0,
            }
        })
        .collect()
}

/// Builds the world and plants the seed's scenarios in it.
pub fn build(rng: &mut ChaCha8Rng, sizes: &Sizes) -> World {
    let (persons, children) = people(rng, sizes.persons);
    let mut enterprises = enterprises(rng, &persons, sizes.enterprises);
    let officials = officials(rng, &persons);
    let planted = sizes.planted;

    // Background arrears (about 3%) and funding applicants that are not in arrears.
    let mut order: Vec<usize> = (0..enterprises.len()).collect();
    order.shuffle(rng);
    let (arrears_set, rest) =
        order.split_at(enterprises.len() * 3 / 100 + planted.arrears_applicants);
    for &e in arrears_set {
        let months = rng.random_range(2..=sizes.months.min(9));
        enterprises[e].arrears = Some((sizes.months - months, months));
    }
    let application_window = (Date::constant(2015, 3, 1), Date::constant(2015, 6, 5));
    let mut funding_applicants: Vec<(usize, Date)> = arrears_set[..planted.arrears_applicants]
        .iter()
        .chain(&rest[..planted.arrears_applicants * 4])
        .map(|&e| {
            (
                e,
                random_date(rng, application_window.0, application_window.1),
            )
        })
        .collect();
    funding_applicants.shuffle(rng);

    let rest = &rest[planted.arrears_applicants * 4..];
    for &e in arrears_set.iter().chain(&rest[..planted.tax_outliers]) {
        enterprises[e].status = "存续";
    }
    for &e in &rest[..planted.tax_outliers] {
        enterprises[e].tax_declared_share = rng.random_range(0.04..0.12);
        enterprises[e].employees = enterprises[e].employees.max(60);
        enterprises[e].quarterly_revenue = f64::from(enterprises[e].employees) * 70_000.0;
    }
    let rest = &rest[planted.tax_outliers..];
    let conflicts = plant_conflicts(rng, &persons, &enterprises, &rest[..planted.conflicts]);

    let surges = plant_surges(
        rng,
        &persons,
        &children,
        &officials,
        planted.property_surges,
    );
    let macau = plant_macau(rng, &officials, &surges, planted.macau_travellers);
    let hotspots = (0..planted.vendor_hotspots)
        .map(|i| {
            let town = (i % TOWNS.len()) as u8;
            let (lat, lon) = vocab::TOWN_CENTRES[town as usize];
            Hotspot {
                lat: lat + rng.random_range(-0.02..0.02),
                lon: lon + rng.random_range(-0.02..0.02),
                town,
                community: COMMUNITIES[town as usize][i / TOWNS.len() % 4],
                sightings: rng.random_range(60..120) + sizes.vendor_background / 200,
            }
        })
        .collect();
    let inspection_reports = (sizes.enterprises / 6).max(planted.fake_licences * 10);
    let fake_licences =
        plant_fake_licences(rng, &enterprises, inspection_reports, planted.fake_licences);
    World {
        persons,
        children,
        enterprises,
        officials,
        funding_applicants,
        surges,
        hotspots,
        macau,
        conflicts,
        fake_licences,
        inspection_reports,
        vendor_background: sizes.vendor_background,
    }
}

fn officials(rng: &mut ChaCha8Rng, persons: &[Person]) -> Vec<Official> {
    let chosen: Vec<PersonIx> = (0..persons.len() as PersonIx)
        .filter(|&i| {
            let year = persons[i as usize].birth.year();
            (1958..=1990).contains(&year) && rng.random_bool(0.02)
        })
        .collect();
    chosen
        .into_iter()
        .map(|person| Official {
            person,
            unit: rng.random_range(0..vocab::UNITS.len()),
            position: vocab::POSITIONS.choose(rng).expect("position"),
            hired: random_date(
                rng,
                persons[person as usize]
                    .birth
                    .checked_add(jiff::Span::new().years(22))
                    .expect("date"),
                Date::constant(2014, 12, 31),
            ),
        })
        .collect()
}

/// Male officials whose wife has a brother: the brother suddenly acquires 3–4 properties.
fn plant_surges(
    rng: &mut ChaCha8Rng,
    persons: &[Person],
    children: &[Vec<PersonIx>],
    officials: &[Official],
    count: usize,
) -> Vec<PropertySurge> {
    let mut candidates: Vec<(usize, PersonIx, PersonIx)> = officials
        .iter()
        .enumerate()
        .filter_map(|(o, official)| {
            let husband = &persons[official.person as usize];
            let wife = husband.spouse.filter(|_| husband.male)?;
            let mother = persons[wife as usize].mother?;
            let brother = children[mother as usize]
                .iter()
                .copied()
                .find(|&b| b != wife && persons[b as usize].male)?;
            Some((o, wife, brother))
        })
        .collect();
    candidates.shuffle(rng);
    let mut used = HashSet::new();
    candidates
        .into_iter()
        .filter(|(_, _, brother)| used.insert(*brother))
        .take(count)
        .map(|(official, wife, relative)| {
            let start = random_date(rng, Date::constant(2014, 3, 1), Date::constant(2014, 12, 1));
            let n = rng.random_range(3..=4);
            let mut dates: Vec<Date> = (0..n)
                .map(|_| {
                    random_date(
                        rng,
                        start,
                        start
                            .checked_add(jiff::Span::new().days(150))
                            .expect("date"),
                    )
                })
                .collect();
            dates.sort();
            PropertySurge {
                official,
                wife,
                relative,
                dates,
            }
        })
        .collect()
}

fn plant_macau(
    rng: &mut ChaCha8Rng,
    officials: &[Official],
    surges: &[PropertySurge],
    count: usize,
) -> Vec<MacauTraveller> {
    let taken: HashSet<usize> = surges.iter().map(|s| s.official).collect();
    let mut pool: Vec<usize> = (0..officials.len())
        .filter(|o| !taken.contains(o))
        .collect();
    pool.shuffle(rng);
    pool.into_iter()
        .take(count)
        .map(|official| MacauTraveller {
            official,
            trips: rng.random_range(40..=60),
        })
        .collect()
}

fn plant_conflicts(
    rng: &mut ChaCha8Rng,
    persons: &[Person],
    enterprises: &[Enterprise],
    chosen: &[usize],
) -> Vec<Conflict> {
    chosen
        .iter()
        .map(|&e| {
            let attribute = *[
                ConflictAttribute::LegalRep,
                ConflictAttribute::Address,
                ConflictAttribute::Phone,
            ]
            .choose(rng)
            .expect("attribute");
            let ent = &enterprises[e];
            let wrong_value = match attribute {
                ConflictAttribute::LegalRep => loop {
                    let other = &persons[rng.random_range(0..persons.len())];
                    if other.name != persons[ent.legal_rep as usize].name {
                        break other.name.clone();
                    }
                },
                ConflictAttribute::Address => loop {
                    let other = street_address(rng, ent.town);
                    if other != ent.address {
                        break other;
                    }
                },
                ConflictAttribute::Phone => loop {
                    let other = mobile(rng);
                    if other != ent.phone {
                        break other;
                    }
                },
            };
            Conflict {
                enterprise: e,
                attribute,
                wrong_source: rng.random_range(0..3),
                wrong_value,
            }
        })
        .collect()
}

fn plant_fake_licences(
    rng: &mut ChaCha8Rng,
    enterprises: &[Enterprise],
    reports: usize,
    count: usize,
) -> Vec<FakeLicence> {
    let registered: HashSet<&str> = enterprises.iter().map(|e| e.code.as_str()).collect();
    let mut slots: Vec<usize> = (0..reports).collect();
    slots.shuffle(rng);
    slots[..count]
        .iter()
        .enumerate()
        .map(|(i, &report)| match i % 3 {
            0 => loop {
                let code = random_credit_code(rng);
                if !registered.contains(code.as_str()) {
                    break FakeLicence {
                        report,
                        typed: code,
                        kind: "unregistered",
                        true_code: None,
                    };
                }
            },
            1 => {
                let mut code = random_credit_code(rng).into_bytes();
                code[17] = if code[17] == b'0' { b'1' } else { b'0' };
                FakeLicence {
                    report,
                    typed: String::from_utf8(code).expect("ascii"),
                    kind: "bad_checksum",
                    true_code: None,
                }
            }
            _ => {
                let real = &enterprises[rng.random_range(0..enterprises.len())].code;
                let mut typed = real.clone().into_bytes();
                let pos = rng.random_range(8..17);
                let old = credit_code::CHARSET
                    .iter()
                    .position(|&c| c == typed[pos])
                    .expect("charset");
                typed[pos] = credit_code::CHARSET[(old + rng.random_range(1..31)) % 31];
                FakeLicence {
                    report,
                    typed: String::from_utf8(typed).expect("ascii"),
                    kind: "typo",
                    true_code: Some(real.clone()),
                }
            }
        })
        .collect()
}
