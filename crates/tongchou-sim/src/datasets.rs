//! The seed scenarios' datasets, as the departments would export them.

use jiff::Span;
use jiff::civil::Date;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use tongchou_model::{DataType, Field, OpenType, Role, Sensitivity, ShareType, UpdateCycle};

use crate::SimError;
use crate::output::{DateStyle, Encoding, ExportSpec, Format, Row, TableWriter, format_date};
use crate::schema::{FieldExt, FileMess, field, text};
use crate::vocab::{self, TOWNS};
use crate::world::{ConflictAttribute, World, export_day, random_date};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Household,
    Marriage,
    ExitEntry,
    EnterpriseRegistry,
    Licences,
    SocialInsurance,
    Arrears,
    TaxReturns,
    PowerAccounts,
    PowerUsage,
    Property,
    Funding,
    Officials,
    Vendors,
    Inspections,
    OrgCodes,
    Employers,
}

/// A scenario dataset's catalog entry (without unit code and resource code, filled in by
/// the generator) and export.
pub struct Dataset {
    pub kind: Kind,
    pub unit: &'static str,
    pub name: &'static str,
    pub summary: &'static str,
    pub tags: &'static [&'static str],
    pub share: ShareType,
    pub open: OpenType,
    pub cycle: UpdateCycle,
    pub base_item: Option<u8>,
    pub key: &'static [&'static str],
    pub fields: Vec<Field>,
    pub spec: ExportSpec,
}

fn spec(
    file: &str,
    format: Format,
    encoding: Encoding,
    title: Option<&str>,
    date_style: DateStyle,
) -> ExportSpec {
    ExportSpec {
        file: file.to_string(),
        format,
        encoding,
        title: title.map(str::to_string),
        date_style,
    }
}

fn date(name: &str, label: &str) -> Field {
    field(name, label, DataType::Date)
}
fn int(name: &str, label: &str) -> Field {
    field(name, label, DataType::Integer)
}
/// Yuan to the fen, 万元 to the yuan, kWh and m² to two places, coordinates to six.
fn dec(name: &str, label: &str) -> Field {
    let scale = if label.contains("万元") {
        4
    } else if label.contains("经度") || label.contains("纬度") {
        6
    } else {
        2
    };
    field(name, label, DataType::Decimal).digits(18, scale)
}
fn person_id(name: &str, label: &str) -> Field {
    text(name, label).role(Role::PersonId)
}
fn person_name(name: &str, label: &str) -> Field {
    text(name, label).role(Role::PersonName)
}
fn credit(name: &str, label: &str) -> Field {
    text(name, label).role(Role::EnterpriseId)
}
fn ent_name(name: &str, label: &str) -> Field {
    text(name, label).role(Role::EnterpriseName)
}
fn address(name: &str, label: &str) -> Field {
    text(name, label).role(Role::Address)
}
fn phone(name: &str, label: &str) -> Field {
    text(name, label).role(Role::Phone)
}

#[allow(clippy::too_many_arguments)]
fn dataset(
    kind: Kind,
    unit: &'static str,
    name: &'static str,
    summary: &'static str,
    tags: &'static [&'static str],
    (share, open, cycle): (ShareType, OpenType, UpdateCycle),
    key: &'static [&'static str],
    fields: Vec<Field>,
    spec: ExportSpec,
) -> Dataset {
    Dataset {
        kind,
        unit,
        name,
        summary,
        tags,
        share,
        open,
        cycle,
        base_item: None,
        key,
        fields,
        spec,
    }
}

/// The scenario datasets, in a fixed order.
pub fn scenario_datasets() -> Vec<Dataset> {
    use Encoding::*;
    use Format::*;
    let conditional = (ShareType::Conditional, OpenType::None, UpdateCycle::Monthly);
    let mut household = dataset(
        Kind::Household,
        "household_registration",
        "户籍人口信息",
        "南海区常住户籍人口的身份、家庭关系和户籍地址，含父母身份证号，可推导亲属关系。",
        &["户籍", "人口", "家庭关系", "身份证"],
        (ShareType::Conditional, OpenType::None, UpdateCycle::Daily),
        &["person_id"],
        vec![
            person_id("person_id", "公民身份号码").unique(),
            person_name("name", "姓名").required(),
            text("gender", "性别").allowed(&["男", "女"]).required(),
            text("ethnic", "民族"),
            date("birth_date", "出生日期").role(Role::BirthDate),
            text("household_no", "户号").required(),
            text("relation", "与户主关系"),
            person_id("father_id", "父亲公民身份号码"),
            person_id("mother_id", "母亲公民身份号码"),
            address("address", "户籍地址"),
            text("town", "所属镇街").sensitivity(Sensitivity::Public),
            phone("phone", "联系电话"),
        ],
        spec(
            "household_registration/户籍人口信息.csv",
            Csv,
            Gbk,
            None,
            DateStyle::Chinese,
        ),
    );
    household.base_item = Some(1);
    let mut registry = dataset(
        Kind::EnterpriseRegistry,
        "market_regulation",
        "企业登记信息",
        "在南海区登记的企业法人基本信息：统一社会信用代码、名称、法定代表人、注册资本、住所、经营范围和登记状态。",
        &["企业", "法人", "工商登记", "市场主体"],
        (
            ShareType::Unconditional,
            OpenType::Conditional,
            UpdateCycle::Daily,
        ),
        &["credit_code"],
        vec![
            credit("credit_code", "统一社会信用代码").unique(),
            ent_name("name", "企业名称").required(),
            text("kind", "企业类型"),
            person_name("legal_rep", "法定代表人").sensitivity(Sensitivity::Internal),
            person_id("legal_rep_id", "法定代表人身份证号"),
            dec("capital", "注册资本(万元)"),
            date("established", "成立日期"),
            address("address", "住所").sensitivity(Sensitivity::Internal),
            text("town", "所属镇街").sensitivity(Sensitivity::Public),
            text("scope", "经营范围"),
            text("status", "登记状态").allowed(&["存续", "注销", "吊销"]),
            text("industry", "行业门类"),
            phone("phone", "联系电话"),
        ],
        spec(
            "market_regulation/企业登记信息.csv",
            Csv,
            Utf8Bom,
            None,
            DateStyle::Iso,
        ),
    );
    registry.base_item = Some(2);
    vec![
        household,
        dataset(
            Kind::Marriage,
            "civil_affairs",
            "婚姻登记信息",
            "婚姻登记处办理的结婚登记记录，含双方身份证号。",
            &["婚姻", "结婚登记", "配偶"],
            (ShareType::Conditional, OpenType::None, UpdateCycle::Monthly),
            &["registration_no"],
            vec![
                text("registration_no", "登记编号").unique(),
                person_id("husband_id", "男方公民身份号码").required(),
                person_name("husband_name", "男方姓名"),
                person_id("wife_id", "女方公民身份号码").required(),
                person_name("wife_name", "女方姓名"),
                date("registered_on", "登记日期"),
                text("kind", "登记类型"),
                text("office", "登记机关"),
            ],
            spec(
                "civil_affairs/婚姻登记信息.xlsx",
                Xlsx,
                Utf8,
                Some("佛山市南海区婚姻登记信息（截至2015年6月）"),
                DateStyle::Slash,
            ),
        ),
        dataset(
            Kind::ExitEntry,
            "exit_entry",
            "出入境记录",
            "南海区户籍人员经各口岸出入境的记录，含前往地和证件。",
            &["出入境", "港澳", "口岸", "出境"],
            (ShareType::Conditional, OpenType::None, UpdateCycle::Daily),
            &["record_no"],
            vec![
                text("record_no", "记录编号").unique(),
                person_id("person_id", "公民身份号码").required(),
                person_name("name", "姓名"),
                text("direction", "出入境类型").allowed(&["出境", "入境"]),
                date("crossed_on", "出入境日期").required(),
                text("port", "口岸"),
                text("destination", "前往地"),
                text("document_type", "证件类型"),
                text("document_no", "证件号码").sensitivity(Sensitivity::Sensitive),
            ],
            spec("exit_entry/出入境记录.csv", Csv, Utf8, None, DateStyle::Iso),
        ),
        registry,
        dataset(
            Kind::Licences,
            "market_regulation",
            "营业执照信息",
            "企业营业执照的发照、有效期和状态；执照编号即统一社会信用代码。",
            &["营业执照", "执照", "工商"],
            (
                ShareType::Unconditional,
                OpenType::Unconditional,
                UpdateCycle::Daily,
            ),
            &["licence_no"],
            vec![
                credit("licence_no", "执照编号").unique(),
                ent_name("name", "企业名称"),
                date("issued_on", "发照日期"),
                text("valid_until", "营业期限至"),
                text("authority", "登记机关"),
                text("status", "执照状态"),
            ],
            spec(
                "market_regulation/营业执照信息.xlsx",
                Xlsx,
                Utf8,
                Some("南海区营业执照信息"),
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::SocialInsurance,
            "social_insurance",
            "社会保险参保缴费明细",
            "用人单位按月的社会保险参保人数、应缴和实缴金额。",
            &["社保", "社会保险", "缴费", "参保"],
            conditional,
            &[],
            vec![
                text("employer_no", "单位编号").required(),
                credit("credit_code", "统一社会信用代码").required(),
                ent_name("employer_name", "单位名称"),
                text("period", "费款所属期").required(),
                int("insured", "参保人数"),
                dec("due", "应缴金额(元)"),
                dec("paid", "实缴金额(元)"),
                text("state", "缴费状态").allowed(&["足额缴纳", "部分缴纳", "欠缴"]),
            ],
            spec(
                "social_insurance/社会保险参保缴费明细.csv",
                Csv,
                Gbk,
                Some("南海区社会保险参保缴费明细表"),
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::Arrears,
            "social_insurance",
            "社会保险费欠缴明细",
            "欠缴社会保险费的用人单位、欠费起始期、月数和金额。",
            &["社保", "欠费", "欠缴", "社会保险"],
            conditional,
            &["credit_code"],
            vec![
                credit("credit_code", "统一社会信用代码").unique(),
                ent_name("employer_name", "单位名称"),
                text("arrears_from", "欠费起始期"),
                int("months", "欠费月数"),
                dec("amount", "欠缴金额(元)"),
                text("notice_state", "催缴状态"),
                date("counted_on", "统计日期"),
            ],
            spec(
                "social_insurance/社会保险费欠缴明细.xlsx",
                Xlsx,
                Utf8,
                Some("社会保险费欠缴单位明细（2015年6月）"),
                DateStyle::Chinese,
            ),
        ),
        dataset(
            Kind::TaxReturns,
            "tax",
            "企业纳税申报信息",
            "企业按季度的营业收入、应纳税额和实缴税额申报。",
            &["税务", "纳税申报", "税收"],
            (
                ShareType::Conditional,
                OpenType::None,
                UpdateCycle::Quarterly,
            ),
            &["return_no"],
            vec![
                text("return_no", "申报编号").unique(),
                credit("taxpayer_id", "纳税人识别号").required(),
                ent_name("taxpayer_name", "纳税人名称"),
                text("period", "所属期"),
                dec("revenue", "申报营业收入(元)"),
                dec("tax_due", "应纳税额(元)"),
                dec("tax_paid", "实缴税额(元)"),
                date("filed_on", "申报日期"),
            ],
            spec(
                "tax/企业纳税申报信息.csv",
                Csv,
                Utf8,
                None,
                DateStyle::Slash,
            ),
        ),
        dataset(
            Kind::PowerAccounts,
            "power_supply",
            "用电客户信息",
            "用电户号、户名、用电地址、用电类别和合同容量；部分户有统一社会信用代码。",
            &["用电", "电力", "户号"],
            conditional,
            &["account_no"],
            vec![
                text("account_no", "户号").unique(),
                text("customer_name", "户名").required(),
                address("address", "用电地址"),
                credit("credit_code", "统一社会信用代码"),
                text("category", "用电类别"),
                int("capacity", "合同容量(千伏安)"),
                date("opened_on", "立户日期"),
            ],
            spec(
                "power_supply/用电客户信息.csv",
                Csv,
                Gbk,
                None,
                DateStyle::Mixed,
            ),
        ),
        dataset(
            Kind::PowerUsage,
            "power_supply",
            "月度用电量",
            "各用电户每月的有功电量和电费。",
            &["用电", "电量", "电费"],
            conditional,
            &["account_no", "month"],
            vec![
                text("account_no", "户号").required(),
                text("month", "电费年月").required(),
                dec("kwh", "有功电量(千瓦时)"),
                dec("fee", "电费(元)"),
                date("read_on", "抄表日期"),
            ],
            spec(
                "power_supply/月度用电量.csv",
                Csv,
                Utf8,
                None,
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::Property,
            "real_estate_registry",
            "不动产登记信息",
            "房屋等不动产的权利人、坐落、面积、用途和登记日期。",
            &["不动产", "房产", "产权"],
            conditional,
            &["certificate_no"],
            vec![
                text("certificate_no", "不动产权证号").unique(),
                person_name("owner_name", "权利人").required(),
                person_id("owner_id", "权利人证件号"),
                address("location", "坐落"),
                dec("area", "建筑面积(平方米)"),
                text("usage", "规划用途"),
                text("acquisition", "取得方式"),
                date("registered_on", "登记日期"),
                dec("price", "交易价格(万元)"),
            ],
            spec(
                "real_estate_registry/不动产登记信息.csv",
                Csv,
                Utf8,
                None,
                DateStyle::Mixed,
            ),
        ),
        dataset(
            Kind::Funding,
            "science_technology",
            "科技项目资助申请",
            "企业申报科技计划项目资助的申请记录。",
            &["科技", "资助", "项目申报"],
            (
                ShareType::Unconditional,
                OpenType::None,
                UpdateCycle::Irregular,
            ),
            &["application_no"],
            vec![
                text("application_no", "申请编号").unique(),
                ent_name("applicant", "申请单位"),
                credit("credit_code", "统一社会信用代码").required(),
                text("project", "项目名称"),
                dec("amount", "申请资助金额(万元)"),
                date("applied_on", "申请日期"),
                text("category", "项目类别"),
                text("review_state", "审核状态"),
            ],
            spec(
                "science_technology/科技项目资助申请.xlsx",
                Xlsx,
                Utf8,
                Some("2015年南海区科技计划项目资助申请汇总表"),
                DateStyle::Chinese,
            ),
        ),
        dataset(
            Kind::Officials,
            "organisation",
            "公职人员名册",
            "区属机关事业单位公职人员的身份、单位、职务和参加工作时间。",
            &["公职人员", "干部", "名册"],
            (ShareType::Conditional, OpenType::None, UpdateCycle::Monthly),
            &["staff_no"],
            vec![
                text("staff_no", "人员编号").unique(),
                person_id("person_id", "公民身份号码").required(),
                person_name("name", "姓名"),
                text("gender", "性别"),
                text("unit", "工作单位"),
                text("position", "职务"),
                date("hired_on", "参加工作时间"),
                text("politics", "政治面貌"),
            ],
            spec(
                "organisation/公职人员名册.csv",
                Csv,
                Utf8,
                None,
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::Vendors,
            "urban_management",
            "流动摊贩巡查记录",
            "城管巡查发现流动摊贩的时间、经纬度、经营品类和处置方式。",
            &["流动摊贩", "城管", "巡查", "市场规划"],
            (
                ShareType::Unconditional,
                OpenType::Conditional,
                UpdateCycle::Daily,
            ),
            &["record_no"],
            vec![
                text("record_no", "记录编号").unique(),
                field("seen_at", "巡查时间", DataType::Timestamp),
                dec("longitude", "经度").role(Role::Coordinates),
                dec("latitude", "纬度").role(Role::Coordinates),
                text("town", "所属镇街"),
                text("goods", "经营品类"),
                person_name("patroller", "巡查队员").sensitivity(Sensitivity::Internal),
                text("action", "处置方式"),
            ],
            spec(
                "urban_management/流动摊贩巡查记录.csv",
                Csv,
                Utf8,
                None,
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::Inspections,
            "emergency_management",
            "综合巡查隐患报告",
            "综合巡查员手持终端上报的商户安全隐患，含现场录入的营业执照号码。",
            &["巡查", "隐患", "消防", "营业执照"],
            (
                ShareType::Unconditional,
                OpenType::None,
                UpdateCycle::Realtime,
            ),
            &["report_no"],
            vec![
                text("report_no", "报告编号").unique(),
                date("inspected_on", "巡查日期"),
                person_name("inspector", "巡查员").sensitivity(Sensitivity::Internal),
                ent_name("shop_name", "商户名称"),
                address("shop_address", "经营地址").sensitivity(Sensitivity::Internal),
                text("licence_no_typed", "营业执照号码(现场录入)"),
                text("hazard", "隐患类型"),
                text("description", "隐患描述"),
                text("town", "所属镇街"),
                text("rectify_state", "整改状态"),
            ],
            spec(
                "emergency_management/综合巡查隐患报告.ndjson",
                Ndjson,
                Utf8,
                None,
                DateStyle::Iso,
            ),
        ),
        dataset(
            Kind::OrgCodes,
            "quality_supervision",
            "组织机构代码登记信息",
            "组织机构代码证登记的机构名称、法定代表人、地址和电话。",
            &["组织机构代码", "质监", "机构"],
            (
                ShareType::Unconditional,
                OpenType::None,
                UpdateCycle::Monthly,
            ),
            &["org_code"],
            vec![
                text("org_code", "组织机构代码").unique(),
                credit("credit_code", "统一社会信用代码"),
                ent_name("name", "机构名称"),
                person_name("legal_rep", "法定代表人").sensitivity(Sensitivity::Internal),
                address("address", "机构地址").sensitivity(Sensitivity::Internal),
                phone("phone", "联系电话"),
                date("registered_on", "登记日期"),
            ],
            spec(
                "quality_supervision/组织机构代码登记信息.csv",
                Csv,
                Gbk,
                None,
                DateStyle::Slash,
            ),
        ),
        dataset(
            Kind::Employers,
            "human_resources",
            "用人单位参保登记信息",
            "用人单位在人社部门的参保登记：名称、法定代表人、地址、电话、参保人数。",
            &["用人单位", "参保登记", "人社"],
            conditional,
            &["credit_code"],
            vec![
                credit("credit_code", "统一社会信用代码").unique(),
                ent_name("employer_name", "单位名称"),
                person_name("legal_rep", "法定代表人").sensitivity(Sensitivity::Internal),
                address("address", "单位地址").sensitivity(Sensitivity::Internal),
                phone("phone", "联系电话"),
                date("registered_on", "参保登记日期"),
                int("insured", "参保人数"),
            ],
            spec(
                "human_resources/用人单位参保登记信息.xlsx",
                Xlsx,
                Utf8,
                Some("用人单位参保登记信息表"),
                DateStyle::Iso,
            ),
        ),
    ]
}

/// Rate of mistyped identifiers in exports that are not the identifier's authority.
const TYPO_RATE: f64 = 0.003;

pub fn account_no(enterprise: usize) -> String {
    format!("0305{:08}", 10_000_000 + enterprise)
}

pub fn application_no(i: usize) -> String {
    format!("KJ2015{i:05}")
}

pub fn report_no(i: usize) -> String {
    format!("XC2015{i:06}")
}

pub fn certificate_no(year: i16, n: usize) -> String {
    format!("粤({year})佛南不动产权第{n:07}号")
}

/// The months of monthly data, oldest first, ending with June 2015.
pub fn months(count: u32) -> Vec<(i16, i8)> {
    (0..count)
        .map(|i| {
            let back = count - 1 - i;
            let total = 2015 * 12 + 5 - back as i32;
            ((total / 12) as i16, (total % 12 + 1) as i8)
        })
        .collect()
}

/// The value an enterprise attribute has in one source, conflicts applied.
pub fn enterprise_value(
    world: &World,
    e: usize,
    attribute: ConflictAttribute,
    source: usize,
) -> String {
    if let Some(c) = world
        .conflicts
        .iter()
        .find(|c| c.enterprise == e && c.attribute == attribute && c.wrong_source == source)
    {
        return c.wrong_value.clone();
    }
    let ent = &world.enterprises[e];
    match attribute {
        ConflictAttribute::LegalRep => world.person(ent.legal_rep).name.clone(),
        ConflictAttribute::Address => ent.address.clone(),
        ConflictAttribute::Phone => ent.phone.clone(),
    }
}

pub struct Ctx<'a> {
    pub world: &'a World,
    pub rng: ChaCha8Rng,
    pub writer: TableWriter,
    pub mess: FileMess,
    pub row: Row,
    pub style: DateStyle,
    pub file: String,
    pub progress: &'a dyn crate::Progress,
}

/// Rows between two progress reports.
pub const PROGRESS_STEP: u64 = 16_384;

impl Ctx<'_> {
    fn date(&mut self, d: Date) -> String {
        format_date(d, self.style, &mut self.rng)
    }

    pub fn emit(&mut self) -> Result<(), SimError> {
        self.writer.write(&self.row)?;
        self.row.clear();
        if self.writer.rows().is_multiple_of(PROGRESS_STEP) {
            self.progress.advance(PROGRESS_STEP);
        }
        Ok(())
    }

    fn id(&mut self, field: &str, id: &str, protected: bool) -> String {
        if protected {
            return id.to_string();
        }
        self.mess.maybe_corrupt(
            &mut self.rng,
            &self.writer,
            &self.file,
            field,
            id,
            TYPO_RATE,
        )
    }
}

pub fn write(kind: Kind, ctx: &mut Ctx<'_>, months_count: u32) -> Result<(), SimError> {
    let world = ctx.world;
    match kind {
        Kind::Household => {
            let mut order: Vec<usize> = (0..world.persons.len()).collect();
            order.sort_by_key(|&i| {
                (
                    world.persons[i].household,
                    world.persons[i].relation != "户主",
                    i,
                )
            });
            for i in order {
                let p = &world.persons[i];
                let birth = ctx.date(p.birth);
                let r = &mut ctx.row;
                r.push(&p.id);
                r.push(&p.name);
                r.push(if p.male { "男" } else { "女" });
                r.push(p.ethnic);
                r.push(&birth);
                r.push_fmt(format_args!("4406050{:08}", p.household));
                r.push(p.relation);
                r.push(p.father.map(|f| world.person(f).id.as_str()).unwrap_or(""));
                r.push(p.mother.map(|m| world.person(m).id.as_str()).unwrap_or(""));
                r.push(&p.address);
                r.push(TOWNS[p.town as usize]);
                r.push(&p.phone);
                ctx.emit()?;
            }
        }
        Kind::Marriage => {
            let protected: std::collections::HashSet<u32> = world
                .surges
                .iter()
                .flat_map(|s| [world.officials[s.official].person, s.wife])
                .collect();
            let mut n = 0;
            for (i, p) in world.persons.iter().enumerate() {
                let (Some(wife), Some(on), true) = (p.spouse, p.married_on, p.male) else {
                    continue;
                };
                n += 1;
                let w = world.person(wife);
                let keep = protected.contains(&(i as u32));
                let on = ctx.date(on);
                let husband_id = ctx.id("husband_id", &p.id, keep);
                let wife_id = ctx.id("wife_id", &w.id, keep);
                let r = &mut ctx.row;
                r.push_fmt(format_args!("HY{n:08}"));
                r.push(&husband_id);
                r.push(&p.name);
                r.push(&wife_id);
                r.push(&w.name);
                r.push(&on);
                r.push("结婚登记");
                r.push("佛山市南海区民政局婚姻登记处");
                ctx.emit()?;
            }
        }
        Kind::ExitEntry => write_exit_entry(ctx)?,
        Kind::EnterpriseRegistry => {
            for (e, ent) in world.enterprises.iter().enumerate() {
                let rep = world.person(ent.legal_rep);
                let established = ctx.date(ent.established);
                let rep_id = ctx.id("legal_rep_id", &rep.id, false);
                let (name, addr, tel) = (
                    enterprise_value(world, e, ConflictAttribute::LegalRep, 0),
                    enterprise_value(world, e, ConflictAttribute::Address, 0),
                    enterprise_value(world, e, ConflictAttribute::Phone, 0),
                );
                let r = &mut ctx.row;
                r.push(&ent.code);
                r.push(&ent.name);
                r.push(if ent.name.ends_with("股份有限公司") {
                    "股份有限公司"
                } else {
                    "有限责任公司"
                });
                r.push(&name);
                r.push(&rep_id);
                r.push_fmt(format_args!("{}", ent.capital_wan));
                r.push(&established);
                r.push(&addr);
                r.push(TOWNS[ent.town as usize]);
                r.push_fmt(format_args!(
                    "{}的生产、销售",
                    vocab::INDUSTRIES[ent.industry].0
                ));
                r.push(ent.status);
                r.push(vocab::INDUSTRIES[ent.industry].1);
                r.push(&tel);
                ctx.emit()?;
            }
        }
        Kind::Licences => {
            for ent in &world.enterprises {
                let issued = ctx.date(ent.established);
                let r = &mut ctx.row;
                r.push(&ent.code);
                r.push(&ent.name);
                r.push(&issued);
                r.push("长期");
                r.push("佛山市南海区市场监督管理局");
                r.push(if ent.status == "存续" {
                    "有效"
                } else {
                    "已缴销"
                });
                ctx.emit()?;
            }
        }
        Kind::SocialInsurance => {
            let protected = applicant_set(world);
            for (e, ent) in world.enterprises.iter().enumerate() {
                if ent.status != "存续" {
                    continue;
                }
                let base = f64::from(ent.employees) * 1_050.0;
                for (m, (year, month)) in months(months_count).into_iter().enumerate() {
                    let insured =
                        (f64::from(ent.employees) * ctx.rng.random_range(0.9..1.0)) as u32;
                    let due = base * f64::from(insured) / f64::from(ent.employees.max(1));
                    let owing = ent.arrears.is_some_and(|(from, _)| m as u32 >= from);
                    let (paid, state) = if owing {
                        if ctx.rng.random_bool(0.3) {
                            (due * 0.4, "部分缴纳")
                        } else {
                            (0.0, "欠缴")
                        }
                    } else {
                        (due, "足额缴纳")
                    };
                    let code = ctx.id("credit_code", &ent.code, protected.contains(&e) || owing);
                    let r = &mut ctx.row;
                    r.push_fmt(format_args!("SB{:07}", e + 1));
                    r.push(&code);
                    r.push(&ent.name);
                    r.push_fmt(format_args!("{year}{month:02}"));
                    r.push_fmt(format_args!("{insured}"));
                    r.push_fmt(format_args!("{due:.2}"));
                    r.push_fmt(format_args!("{paid:.2}"));
                    r.push(state);
                    ctx.emit()?;
                }
            }
        }
        Kind::Arrears => {
            let all_months = months(months_count);
            let counted = ctx.date(export_day());
            for ent in &world.enterprises {
                let Some((from, count)) = ent.arrears else {
                    continue;
                };
                let (y, m) = all_months[from as usize];
                let notice = ["已催缴", "未催缴", "已立案"][ctx.rng.random_range(0..3)];
                let r = &mut ctx.row;
                r.push(&ent.code);
                r.push(&ent.name);
                r.push_fmt(format_args!("{y}{m:02}"));
                r.push_fmt(format_args!("{count}"));
                r.push_fmt(format_args!(
                    "{:.2}",
                    f64::from(count) * f64::from(ent.employees) * 1_050.0 * 0.85
                ));
                r.push(notice);
                r.push(&counted);
                ctx.emit()?;
            }
        }
        Kind::TaxReturns => {
            let outliers: std::collections::HashSet<usize> = world
                .enterprises
                .iter()
                .enumerate()
                .filter(|(_, e)| e.tax_declared_share < 1.0)
                .map(|(i, _)| i)
                .collect();
            let quarters: Vec<(i16, i8)> = months(months_count)
                .into_iter()
                .filter(|(_, m)| m % 3 == 0)
                .map(|(y, m)| (y, m / 3))
                .collect();
            let mut n = 0;
            for (e, ent) in world.enterprises.iter().enumerate() {
                if ent.status != "存续" {
                    continue;
                }
                for &(year, quarter) in &quarters {
                    n += 1;
                    let revenue = ent.quarterly_revenue
                        * ctx.rng.random_range(0.9..1.1)
                        * ent.tax_declared_share;
                    let tax = revenue * 0.06;
                    let filed = Date::new(year, quarter * 3, 28)
                        .expect("date")
                        .checked_add(Span::new().days(15))
                        .expect("date");
                    let filed = ctx.date(filed);
                    let code = ctx.id("taxpayer_id", &ent.code, outliers.contains(&e));
                    let r = &mut ctx.row;
                    r.push_fmt(format_args!("SS{n:09}"));
                    r.push(&code);
                    r.push(&ent.name);
                    r.push_fmt(format_args!("{year}年第{quarter}季度"));
                    r.push_fmt(format_args!("{revenue:.2}"));
                    r.push_fmt(format_args!("{tax:.2}"));
                    r.push_fmt(format_args!("{tax:.2}"));
                    r.push(&filed);
                    ctx.emit()?;
                }
            }
        }
        Kind::PowerAccounts => write_power_accounts(ctx)?,
        Kind::PowerUsage => {
            let all = months(months_count);
            for (e, ent) in world.enterprises.iter().enumerate() {
                if ent.status != "存续" {
                    continue;
                }
                let kwh_per_tax = vocab::INDUSTRIES[ent.industry].2;
                let monthly_tax = ent.quarterly_revenue * 0.06 / 3.0;
                for &(year, month) in &all {
                    let kwh =
                        monthly_tax / 10_000.0 * kwh_per_tax * ctx.rng.random_range(0.85..1.15);
                    let read = ctx.date(Date::new(year, month, 25).expect("date"));
                    let r = &mut ctx.row;
                    r.push(&account_no(e));
                    r.push_fmt(format_args!("{year}-{month:02}"));
                    r.push_fmt(format_args!("{kwh:.1}"));
                    r.push_fmt(format_args!("{:.2}", kwh * 0.78));
                    r.push(&read);
                    ctx.emit()?;
                }
            }
            for h in 0..residential_accounts(world) {
                for &(year, month) in &all {
                    let kwh = ctx.rng.random_range(120.0..650.0);
                    let read = ctx.date(Date::new(year, month, 25).expect("date"));
                    let r = &mut ctx.row;
                    r.push(&account_no(world.enterprises.len() + h));
                    r.push_fmt(format_args!("{year}-{month:02}"));
                    r.push_fmt(format_args!("{kwh:.1}"));
                    r.push_fmt(format_args!("{:.2}", kwh * 0.61));
                    r.push(&read);
                    ctx.emit()?;
                }
            }
        }
        Kind::Property => write_property(ctx)?,
        Kind::Funding => {
            for (i, &(e, applied)) in world.funding_applicants.iter().enumerate() {
                let ent = &world.enterprises[e];
                let applied = ctx.date(applied);
                let amount = ctx.rng.random_range(10..200);
                let topic = ["智能制造", "节能减排", "新材料", "工业互联网", "检测技术"]
                    [ctx.rng.random_range(0..5)];
                let r = &mut ctx.row;
                r.push(&application_no(i + 1));
                r.push(&ent.name);
                r.push(&ent.code);
                r.push_fmt(format_args!(
                    "{}{}关键技术研发",
                    vocab::INDUSTRIES[ent.industry].0,
                    topic
                ));
                r.push_fmt(format_args!("{amount}"));
                r.push(&applied);
                r.push(["企业技术创新专项", "科技型中小企业扶持", "产学研合作"][i % 3]);
                r.push("待审核");
                ctx.emit()?;
            }
        }
        Kind::Officials => {
            for (i, o) in world.officials.iter().enumerate() {
                let p = world.person(o.person);
                let hired = ctx.date(o.hired);
                let politics = if ctx.rng.random_bool(0.7) {
                    "中共党员"
                } else {
                    "群众"
                };
                let r = &mut ctx.row;
                r.push_fmt(format_args!("GZ{:06}", i + 1));
                r.push(&p.id);
                r.push(&p.name);
                r.push(if p.male { "男" } else { "女" });
                r.push(vocab::UNITS[o.unit].name);
                r.push(o.position);
                r.push(&hired);
                r.push(politics);
                ctx.emit()?;
            }
        }
        Kind::Vendors => write_vendors(ctx)?,
        Kind::Inspections => write_inspections(ctx)?,
        Kind::OrgCodes => {
            for (e, ent) in world.enterprises.iter().enumerate() {
                let registered = ctx.date(ent.established);
                let r = &mut ctx.row;
                r.push_fmt(format_args!("{}-{}", &ent.code[8..16], &ent.code[16..17]));
                r.push(&ent.code);
                r.push(&ent.name);
                r.push(&enterprise_value(world, e, ConflictAttribute::LegalRep, 1));
                r.push(&enterprise_value(world, e, ConflictAttribute::Address, 1));
                r.push(&enterprise_value(world, e, ConflictAttribute::Phone, 1));
                r.push(&registered);
                ctx.emit()?;
            }
        }
        Kind::Employers => {
            for (e, ent) in world.enterprises.iter().enumerate() {
                let registered = ctx.date(
                    ent.established
                        .checked_add(Span::new().days(20))
                        .expect("date"),
                );
                let r = &mut ctx.row;
                r.push(&ent.code);
                r.push(&ent.name);
                r.push(&enterprise_value(world, e, ConflictAttribute::LegalRep, 2));
                r.push(&enterprise_value(world, e, ConflictAttribute::Address, 2));
                r.push(&enterprise_value(world, e, ConflictAttribute::Phone, 2));
                r.push(&registered);
                r.push_fmt(format_args!("{}", ent.employees));
                ctx.emit()?;
            }
        }
    }
    Ok(())
}

fn applicant_set(world: &World) -> std::collections::HashSet<usize> {
    world.funding_applicants.iter().map(|(e, _)| *e).collect()
}

pub fn residential_accounts(world: &World) -> usize {
    world.enterprises.len() / 3
}

const MACAU_PORTS: [&str; 2] = ["拱北口岸", "横琴口岸"];
const OTHER_TRIPS: [(&str, &str, &str); 5] = [
    ("香港", "罗湖口岸", "往来港澳通行证"),
    ("香港", "皇岗口岸", "往来港澳通行证"),
    ("泰国", "白云机场口岸", "普通护照"),
    ("日本", "白云机场口岸", "普通护照"),
    ("新加坡", "白云机场口岸", "普通护照"),
];

fn write_exit_entry(ctx: &mut Ctx<'_>) -> Result<(), SimError> {
    let world = ctx.world;
    let planted: std::collections::HashMap<u32, u32> = world
        .macau
        .iter()
        .map(|m| (world.officials[m.official].person, m.trips))
        .collect();
    let period = (Date::constant(2014, 1, 1), export_day());
    let mut n = 0u64;
    for (i, p) in world.persons.iter().enumerate() {
        let i = i as u32;
        let planted_trips = planted.get(&i).copied();
        if planted_trips.is_none() && (!world.is_adult(i) || !ctx.rng.random_bool(0.10)) {
            continue;
        }
        let document_no = format!("C{:08}", ctx.rng.random_range(0..100_000_000u32));
        let mut trips: Vec<(Date, &str, &str, &str)> = Vec::new();
        match planted_trips {
            Some(count) => {
                let year_start = Date::constant(2014, 1, 1);
                for k in 0..count {
                    let day = year_start
                        .checked_add(Span::new().days(i64::from(k) * 360 / i64::from(count)))
                        .expect("date");
                    trips.push((day, "澳门", MACAU_PORTS[k as usize % 2], "往来港澳通行证"));
                }
            }
            None => {
                for _ in 0..ctx.rng.random_range(1..=14) {
                    let day = random_date(&mut ctx.rng, period.0, period.1);
                    let (dest, port, doc) = if ctx.rng.random_bool(0.35) {
                        (
                            "澳门",
                            MACAU_PORTS[ctx.rng.random_range(0..2)],
                            "往来港澳通行证",
                        )
                    } else {
                        *OTHER_TRIPS.choose(&mut ctx.rng).expect("trips")
                    };
                    trips.push((day, dest, port, doc));
                }
            }
        }
        trips.sort();
        for (day, dest, port, doc) in trips {
            let back = day
                .checked_add(Span::new().days(ctx.rng.random_range(0..4)))
                .expect("date");
            for (direction, on) in [("出境", day), ("入境", back)] {
                n += 1;
                let on = ctx.date(on);
                let id = ctx.id("person_id", &p.id, planted_trips.is_some());
                let r = &mut ctx.row;
                r.push_fmt(format_args!("CRJ{n:010}"));
                r.push(&id);
                r.push(&p.name);
                r.push(direction);
                r.push(&on);
                r.push(port);
                r.push(dest);
                r.push(doc);
                r.push(&document_no);
                ctx.emit()?;
            }
        }
    }
    Ok(())
}

/// How a customer name on an electricity account may differ from the registered name.
fn account_name_variant(rng: &mut ChaCha8Rng, name: &str) -> (String, Option<&'static str>) {
    let short = name.trim_start_matches("佛山市南海区");
    match rng.random_range(0..100) {
        0..60 => (name.to_string(), None),
        60..85 => (short.to_string(), Some("prefix_dropped")),
        85..95 => {
            let stem = short
                .trim_end_matches("股份有限公司")
                .trim_end_matches("有限责任公司")
                .trim_end_matches("有限公司");
            (format!("南海{stem}厂"), Some("trade_name_only"))
        }
        _ => (
            format!(
                "{short}（原{}）",
                &short.chars().take(2).collect::<String>()
            ),
            Some("annotated"),
        ),
    }
}

fn write_power_accounts(ctx: &mut Ctx<'_>) -> Result<(), SimError> {
    let world = ctx.world;
    for (e, ent) in world.enterprises.iter().enumerate() {
        if ent.status != "存续" {
            continue;
        }
        let (name, variant) = account_name_variant(&mut ctx.rng, &ent.name);
        if let Some(variant) = variant {
            ctx.mess.duplicate(
                &ctx.writer,
                &ctx.file,
                ("enterprise", &ent.code),
                variant,
                &name,
            );
        }
        let with_code = ctx.rng.random_bool(0.6);
        let code = if with_code {
            ctx.id("credit_code", &ent.code, ent.tax_declared_share < 1.0)
        } else {
            String::new()
        };
        let opened = ctx.date(
            ent.established
                .checked_add(Span::new().days(45))
                .expect("date"),
        );
        let category = if ent.employees > 200 {
            "大工业用电"
        } else {
            "一般工商业用电"
        };
        let r = &mut ctx.row;
        r.push(&account_no(e));
        r.push(&name);
        r.push(&ent.address);
        r.push(&code);
        r.push(category);
        r.push_fmt(format_args!("{}", (ent.employees / 10 + 1) * 50));
        r.push(&opened);
        ctx.emit()?;
    }
    for h in 0..residential_accounts(world) {
        let p = world.person(ctx.rng.random_range(0..world.persons.len()) as u32);
        let opened = random_date(
            &mut ctx.rng,
            Date::constant(1995, 1, 1),
            Date::constant(2015, 1, 1),
        );
        let opened = ctx.date(opened);
        let r = &mut ctx.row;
        r.push(&account_no(world.enterprises.len() + h));
        r.push(&p.name);
        r.push(&p.address);
        r.push("");
        r.push("居民生活用电");
        r.push("8");
        r.push(&opened);
        ctx.emit()?;
    }
    Ok(())
}

fn write_property(ctx: &mut Ctx<'_>) -> Result<(), SimError> {
    let world = ctx.world;
    let surge_of: std::collections::HashMap<u32, usize> = world
        .surges
        .iter()
        .enumerate()
        .map(|(s, c)| (c.relative, s))
        .collect();
    let mut n = 0;
    for (i, p) in world.persons.iter().enumerate() {
        let i = i as u32;
        let surge = surge_of.get(&i).copied();
        let owned = if !world.is_adult(i) {
            0
        } else {
            match ctx.rng.random_range(0..100) {
                0..60 => 0,
                60..95 => 1,
                _ => 2,
            }
        };
        let mut dates: Vec<(Date, String)> = Vec::new();
        let first = random_date(
            &mut ctx.rng,
            Date::constant(1998, 1, 1),
            Date::constant(2009, 12, 31),
        );
        for k in 0..owned {
            let d = if k == 0 {
                first
            } else {
                random_date(&mut ctx.rng, Date::constant(2012, 1, 1), export_day())
            };
            n += 1;
            dates.push((d, certificate_no(d.year(), n)));
        }
        if let Some(s) = surge {
            for (k, d) in world.surges[s].dates.iter().enumerate() {
                dates.push((*d, surge_certificate(s, k, d.year())));
            }
        }
        for (d, cert) in dates {
            let (owner_name, variant) = match ctx.rng.random_range(0..100) {
                _ if surge.is_some() => (p.name.clone(), None),
                0..2 => (traditional(&p.name), Some("traditional_characters")),
                2..3 => (spaced(&p.name), Some("extra_space")),
                _ => (p.name.clone(), None),
            };
            let missing_id = surge.is_none() && ctx.rng.random_bool(0.01);
            if let Some(variant) = variant {
                ctx.mess.duplicate(
                    &ctx.writer,
                    &ctx.file,
                    ("person", &p.id),
                    variant,
                    &owner_name,
                );
            } else if missing_id {
                ctx.mess.duplicate(
                    &ctx.writer,
                    &ctx.file,
                    ("person", &p.id),
                    "missing_id",
                    &owner_name,
                );
            }
            let owner_id = if missing_id {
                String::new()
            } else {
                ctx.id("owner_id", &p.id, surge.is_some())
            };
            let on = ctx.date(d);
            let area = ctx.rng.random_range(45.0..160.0);
            let usage = if ctx.rng.random_bool(0.9) {
                "住宅"
            } else {
                "商业"
            };
            let acquisition = if surge.is_some() {
                "买卖"
            } else {
                ["买卖", "买卖", "继承", "赠与", "自建"][ctx.rng.random_range(0..5)]
            };
            let town = ctx.rng.random_range(0..TOWNS.len() as u8);
            let location = crate::world::street_address(&mut ctx.rng, town);
            let r = &mut ctx.row;
            r.push(&cert);
            r.push(&owner_name);
            r.push(&owner_id);
            r.push(&location);
            r.push_fmt(format_args!("{area:.2}"));
            r.push(usage);
            r.push(acquisition);
            r.push(&on);
            r.push_fmt(format_args!("{:.1}", area * 1.3));
            ctx.emit()?;
        }
    }
    Ok(())
}

pub fn surge_certificate(surge: usize, k: usize, year: i16) -> String {
    certificate_no(year, 9_000_000 + surge * 10 + k)
}

pub fn traditional(name: &str) -> String {
    let converted: String = name
        .chars()
        .map(|c| {
            vocab::TRADITIONAL
                .iter()
                .find(|(s, _)| *s == c)
                .map_or(c, |(_, t)| *t)
        })
        .collect();
    if converted == name {
        spaced(name)
    } else {
        converted
    }
}

fn spaced(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map(String::from).unwrap_or_default();
    format!("{first} {}", chars.as_str())
}

/// Vendor hotspots: sightings within this radius of a planted centre.
pub const HOTSPOT_RADIUS_M: f64 = 150.0;
const METRES_PER_DEGREE: f64 = 111_000.0;

pub fn distance_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let dy = (lat1 - lat2) * METRES_PER_DEGREE;
    let dx = (lon1 - lon2) * METRES_PER_DEGREE * lat1.to_radians().cos();
    (dx * dx + dy * dy).sqrt()
}

fn write_vendors(ctx: &mut Ctx<'_>) -> Result<(), SimError> {
    let world = ctx.world;
    let background = world.vendor_background;
    let mut points: Vec<(f64, f64, u8)> = Vec::new();
    for _ in 0..background {
        let town = ctx.rng.random_range(0..TOWNS.len() as u8);
        let (lat, lon) = vocab::TOWN_CENTRES[town as usize];
        points.push((
            lat + ctx.rng.random_range(-0.06..0.06),
            lon + ctx.rng.random_range(-0.06..0.06),
            town,
        ));
    }
    for h in &world.hotspots {
        let mut placed = 0;
        while placed < h.sightings {
            let dy = ctx.rng.random_range(-1.0..1.0) * HOTSPOT_RADIUS_M * 0.9;
            let dx = ctx.rng.random_range(-1.0..1.0) * HOTSPOT_RADIUS_M * 0.9;
            if (dx * dx + dy * dy).sqrt() > HOTSPOT_RADIUS_M * 0.9 {
                continue;
            }
            let lat = h.lat + dy / METRES_PER_DEGREE;
            let lon = h.lon + dx / (METRES_PER_DEGREE * h.lat.to_radians().cos());
            points.push((lat, lon, h.town));
            placed += 1;
        }
    }
    // Interleave as patrol logs are: by time, not by place.
    let mut order: Vec<usize> = (0..points.len()).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut ctx.rng);
    const GOODS: [&str; 5] = ["水果", "小吃", "蔬菜", "日用品", "衣物"];
    const ACTIONS: [&str; 3] = ["劝离", "教育引导", "暂扣物品"];
    for (n, i) in order.into_iter().enumerate() {
        let (lat, lon, town) = points[i];
        let at = random_date(&mut ctx.rng, Date::constant(2014, 7, 1), export_day());
        let hour = ctx.rng.random_range(7..22);
        let minute = ctx.rng.random_range(0..60);
        let male = ctx.rng.random_bool(0.7);
        let patroller = crate::world::chinese_name(&mut ctx.rng, "梁", male);
        let goods = GOODS[ctx.rng.random_range(0..GOODS.len())];
        let action = ACTIONS[ctx.rng.random_range(0..ACTIONS.len())];
        let r = &mut ctx.row;
        r.push_fmt(format_args!("XF{:08}", n + 1));
        r.push_fmt(format_args!("{at} {hour:02}:{minute:02}:00"));
        r.push_fmt(format_args!("{lon:.6}"));
        r.push_fmt(format_args!("{lat:.6}"));
        r.push(TOWNS[town as usize]);
        r.push(goods);
        r.push(&patroller);
        r.push(action);
        ctx.emit()?;
    }
    Ok(())
}

fn write_inspections(ctx: &mut Ctx<'_>) -> Result<(), SimError> {
    let world = ctx.world;
    let fakes: std::collections::HashMap<usize, &crate::world::FakeLicence> =
        world.fake_licences.iter().map(|f| (f.report, f)).collect();
    const HAZARDS: [(&str, &str); 4] = [
        ("消防通道堵塞", "店铺后门消防通道堆放杂物"),
        ("灭火器过期", "店内灭火器已超过有效期"),
        ("电线私拉乱接", "店铺内电线私拉乱接，存在短路风险"),
        ("违规住人", "商铺阁楼违规住人，三合一场所"),
    ];
    for i in 0..world.inspection_reports {
        let (name, typed, addr, town) = match fakes.get(&i) {
            Some(f) => match &f.true_code {
                Some(real) => {
                    let ent = world
                        .enterprises
                        .iter()
                        .find(|e| &e.code == real)
                        .expect("typo of a real code");
                    (
                        ent.name.clone(),
                        f.typed.clone(),
                        ent.address.clone(),
                        ent.town,
                    )
                }
                None => {
                    let town = ctx.rng.random_range(0..TOWNS.len() as u8);
                    let trade: Vec<char> = vocab::TRADE_NAMES.chars().collect();
                    let name = format!(
                        "{}{}商行",
                        trade.choose(&mut ctx.rng).expect("t"),
                        trade.choose(&mut ctx.rng).expect("t")
                    );
                    (
                        name,
                        f.typed.clone(),
                        crate::world::street_address(&mut ctx.rng, town),
                        town,
                    )
                }
            },
            None => {
                let ent = &world.enterprises[ctx.rng.random_range(0..world.enterprises.len())];
                (
                    ent.name.clone(),
                    ent.code.clone(),
                    ent.address.clone(),
                    ent.town,
                )
            }
        };
        let on = random_date(&mut ctx.rng, Date::constant(2015, 1, 5), export_day());
        let on = ctx.date(on);
        let inspector = crate::world::chinese_name(&mut ctx.rng, "何", true);
        let (hazard, description) = HAZARDS[ctx.rng.random_range(0..HAZARDS.len())];
        let r = &mut ctx.row;
        r.push(&report_no(i + 1));
        r.push(&on);
        r.push(&inspector);
        r.push(&name);
        r.push(&addr);
        r.push(&typed);
        r.push(hazard);
        r.push(description);
        r.push(TOWNS[town as usize]);
        r.push("待整改");
        ctx.emit()?;
    }
    Ok(())
}
