//! The rest of the district's inventory: for every unit, plausible resources about its own
//! business objects, with fields and rows drawn from the same world of people and
//! enterprises, so that every resource can be registered, loaded and linked.

use jiff::civil::Date;
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use tongchou_model::{DataType, Field, OpenType, Role, Sensitivity, ShareType, UpdateCycle};

use crate::output::{DateStyle, Encoding, ExportSpec, Format, format_date};
use crate::schema::{FieldExt, field};
use crate::vocab::{self, COMMUNITIES, TOWNS};
use crate::world::{World, random_date};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Person,
    Enterprise,
    Statistics,
}

const PATTERNS: [(&str, Subject, &str); 14] = [
    ("基本信息", Subject::Enterprise, "的基本情况"),
    ("登记信息", Subject::Person, "的登记办理情况"),
    ("变更记录", Subject::Enterprise, "的变更事项和变更日期"),
    ("注销信息", Subject::Enterprise, "的注销、撤销情况"),
    ("年度统计", Subject::Statistics, "按镇街和年度的汇总统计"),
    ("月度统计", Subject::Statistics, "按镇街和月份的汇总统计"),
    (
        "许可审批信息",
        Subject::Enterprise,
        "相关行政许可的申请和审批结果",
    ),
    (
        "检查记录",
        Subject::Enterprise,
        "的日常监督检查记录和检查结果",
    ),
    (
        "行政处罚信息",
        Subject::Enterprise,
        "的行政处罚决定和罚没金额",
    ),
    ("奖励表彰信息", Subject::Person, "获得的奖励和表彰"),
    ("投诉举报信息", Subject::Person, "的投诉举报及处理结果"),
    ("补贴发放明细", Subject::Person, "的补贴申领和发放明细"),
    ("从业人员信息", Subject::Person, "的从业人员身份和资格"),
    ("办理记录", Subject::Person, "的业务办理流水"),
];

/// How a generic field's values are made.
#[derive(Debug, Clone, Copy)]
enum Gen {
    PersonId,
    PersonName,
    Gender,
    BirthDate,
    Phone,
    PersonAddress,
    CreditCode,
    EnterpriseName,
    LegalRep,
    EnterpriseAddress,
    Town,
    Community,
    Day,
    Timestamp,
    Choice(&'static [&'static str]),
    Money,
    Count,
    Area,
    Year,
    Month,
    Serial(&'static str),
    Bool,
    Lon,
    Lat,
    ObjectName,
    Email,
    BankCard,
    Score,
}

struct PoolField {
    name: &'static str,
    label: &'static str,
    data_type: DataType,
    role: Option<Role>,
    generate: Gen,
}

const fn pf(
    name: &'static str,
    label: &'static str,
    data_type: DataType,
    role: Option<Role>,
    generate: Gen,
) -> PoolField {
    PoolField {
        name,
        label,
        data_type,
        role,
        generate,
    }
}

use DataType as T;

const PERSON_FIELDS: [PoolField; 6] = [
    pf(
        "person_id",
        "公民身份号码",
        T::String,
        Some(Role::PersonId),
        Gen::PersonId,
    ),
    pf(
        "person_name",
        "姓名",
        T::String,
        Some(Role::PersonName),
        Gen::PersonName,
    ),
    pf("gender", "性别", T::String, None, Gen::Gender),
    pf(
        "birth_date",
        "出生日期",
        T::Date,
        Some(Role::BirthDate),
        Gen::BirthDate,
    ),
    pf(
        "mobile",
        "手机号码",
        T::String,
        Some(Role::Phone),
        Gen::Phone,
    ),
    pf(
        "home_address",
        "居住地址",
        T::String,
        Some(Role::Address),
        Gen::PersonAddress,
    ),
];

const ENTERPRISE_FIELDS: [PoolField; 4] = [
    pf(
        "credit_code",
        "统一社会信用代码",
        T::String,
        Some(Role::EnterpriseId),
        Gen::CreditCode,
    ),
    pf(
        "enterprise_name",
        "单位名称",
        T::String,
        Some(Role::EnterpriseName),
        Gen::EnterpriseName,
    ),
    pf(
        "legal_rep",
        "法定代表人",
        T::String,
        Some(Role::PersonName),
        Gen::LegalRep,
    ),
    pf(
        "enterprise_address",
        "单位地址",
        T::String,
        Some(Role::Address),
        Gen::EnterpriseAddress,
    ),
];

const STATUS: &[&str] = &["有效", "注销", "暂停", "待审核"];
const RESULTS: &[&str] = &["通过", "不通过", "限期整改", "办结"];
const CATEGORIES: &[&str] = &["一类", "二类", "三类", "其他"];
const GRADES: &[&str] = &["A", "B", "C", "D"];
const CHANNELS: &[&str] = &["窗口", "网上办事大厅", "自助终端", "移动端"];
const SYSTEMS: &[&str] = &["省业务系统", "市业务系统", "区自建系统"];
const PRIORITIES: &[&str] = &["一般", "紧急", "特急"];
const REASONS: &[&str] = &["新办", "变更", "延续", "注销", "补办"];

const GENERIC_FIELDS: [PoolField; 38] = [
    pf("town", "所属镇街", T::String, None, Gen::Town),
    pf("community", "所属村居", T::String, None, Gen::Community),
    pf("registered_on", "登记日期", T::Date, None, Gen::Day),
    pf("changed_on", "变更日期", T::Date, None, Gen::Day),
    pf("approved_on", "审批日期", T::Date, None, Gen::Day),
    pf("valid_from", "有效期起", T::Date, None, Gen::Day),
    pf("valid_to", "有效期止", T::Date, None, Gen::Day),
    pf("status", "状态", T::String, None, Gen::Choice(STATUS)),
    pf(
        "handler",
        "经办人",
        T::String,
        Some(Role::PersonName),
        Gen::PersonName,
    ),
    pf("amount", "金额(元)", T::Decimal, None, Gen::Money),
    pf("quantity", "数量", T::Integer, None, Gen::Count),
    pf("area", "面积(平方米)", T::Decimal, None, Gen::Area),
    pf("stat_year", "统计年度", T::Integer, None, Gen::Year),
    pf("stat_month", "统计月份", T::String, None, Gen::Month),
    pf(
        "remark",
        "备注",
        T::String,
        None,
        Gen::Choice(&["", "", "无", "已核实", "待补充材料"]),
    ),
    pf("category", "类别", T::String, None, Gen::Choice(CATEGORIES)),
    pf("grade", "等级", T::String, None, Gen::Choice(GRADES)),
    pf(
        "approval_no",
        "批准文号",
        T::String,
        None,
        Gen::Serial("南府审"),
    ),
    pf(
        "certificate_no",
        "证书编号",
        T::String,
        None,
        Gen::Serial("ZS"),
    ),
    pf("updated_at", "更新时间", T::Timestamp, None, Gen::Timestamp),
    pf(
        "source_system",
        "来源系统",
        T::String,
        None,
        Gen::Choice(SYSTEMS),
    ),
    pf("result", "办理结果", T::String, None, Gen::Choice(RESULTS)),
    pf("reason", "事由", T::String, None, Gen::Choice(REASONS)),
    pf("is_valid", "是否有效", T::Boolean, None, Gen::Bool),
    pf(
        "longitude",
        "经度",
        T::Decimal,
        Some(Role::Coordinates),
        Gen::Lon,
    ),
    pf(
        "latitude",
        "纬度",
        T::Decimal,
        Some(Role::Coordinates),
        Gen::Lat,
    ),
    pf("object_no", "{}编号", T::String, None, Gen::Serial("BH")),
    pf("object_name", "{}名称", T::String, None, Gen::ObjectName),
    pf(
        "object_type",
        "{}类型",
        T::String,
        None,
        Gen::Choice(CATEGORIES),
    ),
    pf(
        "contact_phone",
        "联系电话",
        T::String,
        Some(Role::Phone),
        Gen::Phone,
    ),
    pf(
        "email",
        "电子邮箱",
        T::String,
        Some(Role::Email),
        Gen::Email,
    ),
    pf(
        "bank_account",
        "银行账号",
        T::String,
        Some(Role::BankCard),
        Gen::BankCard,
    ),
    pf("employees", "从业人数", T::Integer, None, Gen::Count),
    pf("batch_no", "批次号", T::String, None, Gen::Serial("PC")),
    pf(
        "channel",
        "办理渠道",
        T::String,
        None,
        Gen::Choice(CHANNELS),
    ),
    pf(
        "priority",
        "紧急程度",
        T::String,
        None,
        Gen::Choice(PRIORITIES),
    ),
    pf("finished_on", "办结日期", T::Date, None, Gen::Day),
    pf("score", "评分", T::Decimal, None, Gen::Score),
];

/// One generated resource of the inventory.
pub struct FillerResource {
    pub unit: usize,
    pub object: usize,
    pub pattern: usize,
    pub name: String,
    pub summary: String,
    pub share: ShareType,
    pub open: OpenType,
    pub cycle: UpdateCycle,
    pub fields: Vec<Field>,
    gens: Vec<Gen>,
    object_name: String,
    pub rows: u64,
    pub spec: ExportSpec,
}

pub fn objects(unit: usize) -> Vec<&'static str> {
    vocab::UNITS[unit].objects.split('、').collect()
}

/// Plans `count` resources with `fields` fields in all (or a natural number when `None`)
/// and about `rows` rows in all, spread over the units by weight.
pub fn plan(
    rng: &mut ChaCha8Rng,
    count: usize,
    fields: Option<usize>,
    rows: u64,
    taken_per_unit: &[usize],
    everyone: bool,
) -> Vec<FillerResource> {
    let per_unit = allocate_units(rng, count, taken_per_unit, everyone);
    let mut resources = Vec::with_capacity(count);
    for (unit, n) in per_unit.into_iter().enumerate() {
        let objects = objects(unit);
        let mut combos: Vec<(usize, usize)> = (0..objects.len())
            .flat_map(|o| (0..PATTERNS.len()).map(move |p| (o, p)))
            .collect();
        combos.shuffle(rng);
        combos.truncate(n);
        combos.sort();
        for (object, pattern) in combos {
            resources.push(skeleton(rng, unit, object, pattern));
        }
    }
    let mut counts: Vec<usize> = resources.iter().map(|_| rng.random_range(5..=20)).collect();
    if let Some(total) = fields {
        let max = |r: &FillerResource| {
            subject_fields(PATTERNS[r.pattern].1).len() + GENERIC_FIELDS.len() + 1
        };
        let mut sum: usize = counts.iter().sum();
        while sum != total {
            let i = rng.random_range(0..counts.len());
            if sum < total && counts[i] < max(&resources[i]) {
                counts[i] += 1;
                sum += 1;
            } else if sum > total && counts[i] > 5 {
                counts[i] -= 1;
                sum -= 1;
            }
        }
    }
    let weights: Vec<f64> = resources
        .iter()
        .map(|_| (rng.random_range(0.0..5.0f64)).exp())
        .collect();
    let weight_sum: f64 = weights.iter().sum();
    for ((r, n), w) in resources.iter_mut().zip(counts).zip(weights) {
        fill_fields(rng, r, n);
        r.rows = ((rows as f64 * w / weight_sum) as u64).max(20);
        r.spec = export_spec(rng, r);
    }
    resources
}

fn allocate_units(
    rng: &mut ChaCha8Rng,
    count: usize,
    taken: &[usize],
    everyone: bool,
) -> Vec<usize> {
    let capacity = |u: usize| objects(u).len() * PATTERNS.len();
    let mut per_unit = vec![0usize; vocab::UNITS.len()];
    let mut remaining = count;
    if everyone {
        for (u, n) in per_unit.iter_mut().enumerate() {
            if taken[u] == 0 {
                *n = 1;
                remaining -= 1;
            }
        }
    }
    let weights: Vec<(usize, u32)> = vocab::UNITS
        .iter()
        .enumerate()
        .map(|(u, d)| (u, d.weight))
        .collect();
    while remaining > 0 {
        let u = crate::world::pick_weighted(rng, &weights);
        if per_unit[u] < capacity(u) {
            per_unit[u] += 1;
            remaining -= 1;
        }
    }
    per_unit
}

fn subject_fields(subject: Subject) -> &'static [PoolField] {
    match subject {
        Subject::Person => &PERSON_FIELDS,
        Subject::Enterprise => &ENTERPRISE_FIELDS,
        Subject::Statistics => &[],
    }
}

fn skeleton(rng: &mut ChaCha8Rng, unit: usize, object: usize, pattern: usize) -> FillerResource {
    let object_name = objects(unit)[object].to_string();
    let (suffix, subject, about) = PATTERNS[pattern];
    let (share, open) = match subject {
        Subject::Person => (
            *[
                ShareType::Conditional,
                ShareType::Conditional,
                ShareType::None,
            ]
            .choose(rng)
            .expect("share"),
            OpenType::None,
        ),
        Subject::Enterprise => (
            *[ShareType::Unconditional, ShareType::Conditional]
                .choose(rng)
                .expect("share"),
            *[
                OpenType::Unconditional,
                OpenType::Conditional,
                OpenType::None,
            ]
            .choose(rng)
            .expect("open"),
        ),
        Subject::Statistics => (ShareType::Unconditional, OpenType::Unconditional),
    };
    FillerResource {
        unit,
        object,
        pattern,
        name: format!("{object_name}{suffix}"),
        summary: format!("{}掌握的{object_name}{about}。", vocab::UNITS[unit].name),
        share,
        open,
        cycle: *UpdateCycle::ALL.choose(rng).expect("cycle"),
        fields: Vec::new(),
        gens: Vec::new(),
        object_name,
        rows: 0,
        spec: ExportSpec {
            file: String::new(),
            format: Format::Csv,
            encoding: Encoding::Utf8,
            title: None,
            date_style: DateStyle::Iso,
        },
    }
}

fn to_field(p: &PoolField, object: &str) -> Field {
    let mut f = field(p.name, &p.label.replace("{}", object), p.data_type);
    if let Some(role) = p.role {
        f = f.role(role);
    }
    if p.name.starts_with("stat_") || p.name == "town" {
        f = f.sensitivity(Sensitivity::Public);
    }
    if let Gen::Choice(values) = p.generate
        && !values.contains(&"")
    {
        f = f.allowed(values);
    }
    match p.generate {
        Gen::Money | Gen::Area => f.digits(18, 2),
        Gen::Lon | Gen::Lat => f.digits(10, 6),
        Gen::Score => f.digits(4, 1),
        _ => f,
    }
}

fn fill_fields(rng: &mut ChaCha8Rng, r: &mut FillerResource, count: usize) {
    let subject = PATTERNS[r.pattern].1;
    let mut chosen: Vec<&PoolField> = Vec::with_capacity(count);
    let record_no = pf("record_no", "记录编号", T::String, None, Gen::Serial("JL"));
    let mut fields = vec![to_field(&record_no, &r.object_name).unique()];
    let mut gens = vec![Gen::Serial("JL")];
    let core = subject_fields(subject);
    let core_take = core
        .len()
        .min(count - 1)
        .min(2 + rng.random_range(0..=core.len().saturating_sub(2)));
    chosen.extend(core.iter().take(core_take));
    let mut generic: Vec<&PoolField> = GENERIC_FIELDS.iter().collect();
    generic.shuffle(rng);
    chosen.extend(generic.into_iter().take(count - 1 - chosen.len()));
    if chosen.len() < count - 1 {
        chosen.extend(core.iter().skip(core_take).take(count - 1 - chosen.len()));
    }
    for (i, p) in chosen.into_iter().enumerate() {
        let mut f = to_field(p, &r.object_name);
        if i == 0 && subject != Subject::Statistics {
            f = f.required();
        }
        fields.push(f);
        gens.push(p.generate);
    }
    r.fields = fields;
    r.gens = gens;
}

fn export_spec(rng: &mut ChaCha8Rng, r: &FillerResource) -> ExportSpec {
    let slug = vocab::UNITS[r.unit].slug;
    let roll = rng.random_range(0..100);
    let (format, encoding) = match roll {
        0..50 => (Format::Csv, Encoding::Utf8),
        50..70 => (Format::Csv, Encoding::Utf8Bom),
        70..85 => (Format::Csv, Encoding::Gbk),
        85..95 if r.rows <= 30_000 => (Format::Xlsx, Encoding::Utf8),
        85..95 => (Format::Csv, Encoding::Gbk),
        _ => (Format::Ndjson, Encoding::Utf8),
    };
    let title = match format {
        Format::Xlsx if rng.random_bool(0.5) => {
            Some(format!("{}{}", vocab::UNITS[r.unit].name, r.name))
        }
        Format::Csv if rng.random_bool(0.1) => Some(format!("{}（导出）", r.name)),
        _ => None,
    };
    let extension = match format {
        Format::Csv => "csv",
        Format::Xlsx => "xlsx",
        Format::Ndjson => "ndjson",
    };
    ExportSpec {
        file: format!("{slug}/{}.{extension}", r.name),
        format,
        encoding,
        title,
        date_style: *[
            DateStyle::Iso,
            DateStyle::Iso,
            DateStyle::Slash,
            DateStyle::Chinese,
            DateStyle::Mixed,
        ]
        .choose(rng)
        .expect("style"),
    }
}

impl FillerResource {
    /// Writes the resource's rows; identifiers are mistyped now and then, as in any export.
    pub fn write(&self, ctx: &mut crate::datasets::Ctx<'_>) -> Result<(), crate::SimError> {
        let world: &World = ctx.world;
        let window = (Date::constant(2010, 1, 1), crate::world::export_day());
        for n in 0..self.rows {
            let person = world.person(ctx.rng.random_range(0..world.persons.len()) as u32);
            let enterprise = &world.enterprises[ctx.rng.random_range(0..world.enterprises.len())];
            let town = ctx.rng.random_range(0..TOWNS.len());
            for (f, generator) in self.fields.iter().zip(&self.gens) {
                let value: String = match *generator {
                    Gen::PersonId => ctx.mess.maybe_corrupt(
                        &mut ctx.rng,
                        &ctx.writer,
                        &ctx.file,
                        &f.name,
                        &person.id,
                        0.003,
                    ),
                    Gen::CreditCode => ctx.mess.maybe_corrupt(
                        &mut ctx.rng,
                        &ctx.writer,
                        &ctx.file,
                        &f.name,
                        &enterprise.code,
                        0.003,
                    ),
                    Gen::PersonName => person.name.clone(),
                    Gen::Gender => (if person.male { "男" } else { "女" }).to_string(),
                    Gen::BirthDate => format_date(person.birth, ctx.style, &mut ctx.rng),
                    Gen::Phone => person.phone.clone(),
                    Gen::PersonAddress => person.address.clone(),
                    Gen::EnterpriseName => enterprise.name.clone(),
                    Gen::LegalRep => world.person(enterprise.legal_rep).name.clone(),
                    Gen::EnterpriseAddress => enterprise.address.clone(),
                    Gen::Town => TOWNS[town].to_string(),
                    Gen::Community => COMMUNITIES[town][ctx.rng.random_range(0..4)].to_string(),
                    Gen::Day => {
                        let d = random_date(&mut ctx.rng, window.0, window.1);
                        format_date(d, ctx.style, &mut ctx.rng)
                    }
                    Gen::Timestamp => {
                        let d = random_date(&mut ctx.rng, window.0, window.1);
                        format!(
                            "{d} {:02}:{:02}:{:02}",
                            ctx.rng.random_range(8..19),
                            ctx.rng.random_range(0..60),
                            ctx.rng.random_range(0..60)
                        )
                    }
                    Gen::Choice(values) => {
                        values[ctx.rng.random_range(0..values.len())].to_string()
                    }
                    Gen::Money => format!("{:.2}", ctx.rng.random_range(100.0..200_000.0)),
                    Gen::Count => ctx.rng.random_range(1..500).to_string(),
                    Gen::Area => format!("{:.2}", ctx.rng.random_range(20.0..5_000.0)),
                    Gen::Year => ctx.rng.random_range(2010..=2015).to_string(),
                    Gen::Month => format!("2015-{:02}", ctx.rng.random_range(1..=6)),
                    Gen::Serial(prefix) => format!("{prefix}{:08}", n + 1),
                    Gen::Bool => (if ctx.rng.random_bool(0.8) {
                        "是"
                    } else {
                        "否"
                    })
                    .to_string(),
                    Gen::Lon => format!(
                        "{:.6}",
                        vocab::TOWN_CENTRES[town].1 + ctx.rng.random_range(-0.05..0.05)
                    ),
                    Gen::Lat => format!(
                        "{:.6}",
                        vocab::TOWN_CENTRES[town].0 + ctx.rng.random_range(-0.05..0.05)
                    ),
                    Gen::ObjectName => format!(
                        "{}{}{}",
                        TOWNS[town],
                        self.object_name,
                        ctx.rng.random_range(1..200)
                    ),
                    Gen::Email => format!("user{}@example.cn", ctx.rng.random_range(1000..999_999)),
                    Gen::BankCard => {
                        let body =
                            format!("622202{:010}", ctx.rng.random_range(0..10_000_000_000u64));
                        let check = tongchou_ids::bank_card::luhn_check_digit(&body);
                        format!("{body}{check}")
                    }
                    Gen::Score => format!("{:.1}", ctx.rng.random_range(60.0..100.0)),
                };
                ctx.row.push(&value);
            }
            ctx.emit()?;
        }
        Ok(())
    }
}
