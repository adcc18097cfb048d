//! Fixed vocabulary of the simulated district: its 65 units, places, names and trades.

use tongchou_ids::credit_code;
use tongchou_model::Unit;

/// One of the district's units: (Chinese name, English name, slug, GB 32100 category,
/// weight in the inventory, parent slug, the business objects its resources describe).
pub struct UnitDef {
    pub name: &'static str,
    pub name_en: &'static str,
    pub slug: &'static str,
    pub category: &'static str,
    pub weight: u32,
    pub parent: Option<&'static str>,
    pub objects: &'static str,
}

const fn u(
    name: &'static str,
    name_en: &'static str,
    slug: &'static str,
    category: &'static str,
    weight: u32,
    parent: Option<&'static str>,
    objects: &'static str,
) -> UnitDef {
    UnitDef { name, name_en, slug, category, weight, parent, objects }
}

pub const UNITS: [UnitDef; 65] = [
    u("佛山市南海区人民政府办公室", "District Government Office", "district_office", "11", 3, None, "政务督办事项、议案提案办理、政务值班、公文流转"),
    u("佛山市南海区数据统筹局", "Data Coordination Bureau", "data_bureau", "11", 3, None, "信息系统、政务数据目录、数据共享申请、电子政务项目"),
    u("佛山市南海区发展和改革局", "Development and Reform Bureau", "development_reform", "11", 6, None, "固定资产投资项目、重点建设项目、价格监测、企业投资备案"),
    u("佛山市南海区科学技术局", "Science and Technology Bureau", "science_technology", "11", 5, None, "高新技术企业、科技计划项目、科技创新平台、专利资助"),
    u("佛山市南海区经济促进局", "Economic Promotion Bureau", "industry_it", "11", 5, None, "工业企业、技术改造项目、产业园区、规模以上工业产值"),
    u("佛山市公安局南海分局", "Public Security Sub-bureau", "public_security", "11", 8, None, "治安案件、机动车驾驶人、流动人口、旅业住宿"),
    u("佛山市公安局南海分局户政科", "Household Registration Section", "household_registration", "11", 4, Some("public_security"), "户籍迁移、居民身份证办理、出生登记、死亡注销"),
    u("佛山市公安局南海分局出入境管理大队", "Exit-Entry Administration", "exit_entry", "11", 3, Some("public_security"), "出入境证件、港澳通行证签注、外国人住宿登记、出国境审批"),
    u("佛山市南海区民政局", "Civil Affairs Bureau", "civil_affairs", "11", 7, None, "最低生活保障对象、社会组织、养老机构、殡葬服务"),
    u("佛山市南海区司法局", "Justice Bureau", "justice", "11", 4, None, "社区矫正对象、人民调解案件、法律援助案件、律师事务所"),
    u("佛山市南海区财政局", "Finance Bureau", "finance", "11", 5, None, "财政专项资金、政府采购项目、非税收入、行政事业单位资产"),
    u("佛山市南海区人力资源和社会保障局", "Human Resources and Social Security Bureau", "human_resources", "11", 7, None, "就业登记、职业技能培训、劳动监察案件、人才引进"),
    u("佛山市南海区社会保险基金管理局", "Social Insurance Fund Administration", "social_insurance", "12", 5, Some("human_resources"), "参保人员、养老保险待遇、工伤认定、失业保险金"),
    u("国家税务总局佛山市南海区税务局", "Tax Bureau", "tax", "11", 7, None, "纳税人登记、发票领用、税收优惠备案、欠税公告"),
    u("佛山市南海区市场监督管理局", "Market Regulation Bureau", "market_regulation", "11", 9, None, "个体工商户、食品经营许可、特种设备、商标广告"),
    u("佛山市南海区质量技术监督局", "Quality and Technical Supervision Bureau", "quality_supervision", "11", 4, None, "组织机构代码、计量器具、产品质量抽查、标准备案"),
    u("佛山市南海区自然资源局", "Natural Resources Bureau", "natural_resources", "11", 5, None, "建设用地审批、土地出让、矿产资源、土地利用现状"),
    u("佛山市南海区不动产登记中心", "Real Estate Registration Centre", "real_estate_registry", "12", 4, Some("natural_resources"), "不动产抵押、预告登记、查封登记、不动产单元"),
    u("佛山市南海区住房城乡建设和水利局", "Housing, Urban-Rural Development and Water Bureau", "housing", "11", 7, None, "建筑施工许可、商品房预售、建筑企业资质、保障性住房"),
    u("佛山市南海区城市管理和综合执法局", "Urban Management and Law Enforcement Bureau", "urban_management", "11", 6, None, "违法建设、户外广告、环卫设施、占道经营"),
    u("佛山市南海区应急管理局", "Emergency Management Bureau", "emergency_management", "11", 5, None, "安全生产企业、危险化学品经营、应急预案、事故调查"),
    u("佛山市南海区消防救援大队", "Fire and Rescue Brigade", "fire_rescue", "11", 4, None, "消防监督检查、火灾事故、消防设计审查、重点单位"),
    u("佛山市南海区人民检察院", "People's Procuratorate", "procuratorate", "11", 3, None, "审查起诉案件、公益诉讼线索、职务犯罪预防、控告申诉"),
    u("佛山市南海区人民法院", "People's Court", "court", "11", 4, None, "民商事案件、执行案件、失信被执行人、诉讼费"),
    u("佛山市南海区纪委监委", "Discipline Inspection and Supervision Commission", "discipline_inspection", "11", 3, None, "信访举报、廉政档案、问题线索、党纪处分"),
    u("佛山市南海区卫生健康局", "Health Bureau", "health", "11", 7, None, "医疗机构、执业医师、出生医学证明、计划生育服务"),
    u("佛山市南海区教育局", "Education Bureau", "education", "11", 7, None, "中小学校、教师资格、学生学籍、民办培训机构"),
    u("佛山市南海区统计局", "Statistics Bureau", "statistics", "11", 4, None, "统计调查单位、经济普查、人口抽样调查、统计执法"),
    u("佛山市南海区城乡规划局", "Urban-Rural Planning Bureau", "planning", "11", 4, None, "建设工程规划许可、规划条件、控制性详细规划、市政设施"),
    u("广东电网有限责任公司佛山南海供电局", "Power Supply Bureau", "power_supply", "91", 4, None, "供电线路、电费回收、业扩报装、停电计划"),
    u("佛山市南海区交通运输局", "Transport Bureau", "transport", "11", 5, None, "道路运输企业、营运车辆、公交线路、出租汽车"),
    u("佛山市南海区农业农村局", "Agriculture and Rural Affairs Bureau", "agriculture", "11", 5, None, "农村集体经济组织、农业补贴、动物防疫、农产品质量"),
    u("佛山市南海区生态环境局", "Ecology and Environment Bureau", "environment", "11", 5, None, "排污许可、环境监测点、建设项目环评、环境信访"),
    u("佛山市南海区文化广电旅游体育局", "Culture, Radio, TV, Tourism and Sports Bureau", "culture_tourism", "11", 4, None, "文化经营场所、旅行社、体育场馆、文物保护单位"),
    u("佛山市南海区退役军人事务局", "Veterans Affairs Bureau", "veterans", "11", 3, None, "退役军人、优抚对象、安置就业、烈士纪念设施"),
    u("佛山市南海区医疗保障局", "Healthcare Security Bureau", "medical_insurance", "11", 4, None, "定点医药机构、医保结算、医疗救助、特殊门诊"),
    u("佛山市南海区审计局", "Audit Bureau", "audit", "11", 3, None, "审计项目、审计发现问题、整改情况、经济责任审计"),
    u("佛山市南海区商务局", "Commerce Bureau", "commerce", "11", 4, None, "外贸企业、商贸流通企业、外商投资、成品油经营"),
    u("佛山市南海区金融工作局", "Financial Affairs Bureau", "finance_affairs", "11", 3, None, "小额贷款公司、上市后备企业、金融风险监测、融资担保"),
    u("佛山市南海区国有资产监督管理局", "State-owned Assets Supervision Bureau", "state_assets", "11", 3, None, "国有企业、国有资产产权、国有资本经营预算、集体资产交易"),
    u("佛山市南海区行政服务中心", "Administrative Service Centre", "service_centre", "12", 5, None, "行政审批事项、办件、网上办事、窗口评价"),
    u("佛山市南海区档案馆", "Archives", "archives", "12", 2, None, "馆藏档案、档案查阅、档案移交、婚姻档案"),
    u("佛山市南海区住房公积金管理中心", "Housing Provident Fund Centre", "provident_fund", "12", 4, None, "公积金缴存单位、公积金贷款、公积金提取、缴存职工"),
    u("佛山市南海区残疾人联合会", "Disabled Persons' Federation", "disabled_federation", "13", 2, None, "残疾人证、康复服务、残疾人就业、辅助器具"),
    u("佛山市南海区妇女联合会", "Women's Federation", "womens_federation", "13", 2, None, "妇女维权、家庭教育、巾帼创业、儿童之家"),
    u("佛山市南海区总工会", "Federation of Trade Unions", "trade_union", "13", 2, None, "基层工会、困难职工、劳模、职工服务"),
    u("共青团佛山市南海区委员会", "Communist Youth League District Committee", "youth_league", "13", 2, None, "志愿者、青年创业、团组织、少先队"),
    u("佛山市南海区气象局", "Meteorological Bureau", "meteorology", "12", 2, None, "气象观测站、气象灾害预警、雷电防护、降水量"),
    u("佛山市南海区烟草专卖局", "Tobacco Monopoly Bureau", "tobacco", "11", 2, None, "烟草专卖许可、卷烟零售户、涉烟案件、卷烟销售"),
    u("佛山市南海区供水有限公司", "Water Supply Company", "water_supply", "91", 2, None, "用水户、供水管网、水费、水质检测"),
    u("佛山市南海区燃气有限公司", "Gas Supply Company", "gas_supply", "91", 2, None, "用气户、燃气管网、燃气安全检查、瓶装燃气供应点"),
    u("佛山市南海区公共资源交易中心", "Public Resources Trading Centre", "public_trading", "12", 3, None, "工程招标项目、政府采购公告、中标结果、交易主体"),
    u("佛山市南海区信访局", "Letters and Visits Bureau", "petitions", "11", 2, None, "信访事项、来访登记、信访督办、满意度回访"),
    u("佛山市南海区机关事务管理局", "Government Offices Administration", "offices_admin", "11", 2, None, "公务用车、办公用房、公共机构能耗、机关食堂"),
    u("佛山市南海区民族宗教事务局", "Ethnic and Religious Affairs Bureau", "ethnic_religious", "11", 2, None, "宗教活动场所、宗教教职人员、少数民族人口、民族团结示范"),
    u("佛山市南海区外事侨务局", "Foreign and Overseas Chinese Affairs Bureau", "overseas_chinese", "11", 2, None, "归侨侨眷、侨资企业、因公出国、外事接待"),
    u("佛山市南海区桂城街道办事处", "Guicheng Subdistrict Office", "guicheng", "11", 4, None, "社区网格、出租屋、社区服务、居民议事"),
    u("佛山市南海区九江镇人民政府", "Jiujiang Town Government", "jiujiang", "11", 3, None, "村居网格、出租屋、农村土地承包、镇级工程"),
    u("佛山市南海区西樵镇人民政府", "Xiqiao Town Government", "xiqiao", "11", 3, None, "村居网格、旅游景区、纺织企业、镇级工程"),
    u("佛山市南海区丹灶镇人民政府", "Danzao Town Government", "danzao", "11", 3, None, "村居网格、五金企业、新能源产业、镇级工程"),
    u("佛山市南海区狮山镇人民政府", "Shishan Town Government", "shishan", "11", 4, None, "村居网格、工业园区企业、高校园区、镇级工程"),
    u("佛山市南海区大沥镇人民政府", "Dali Town Government", "dali", "11", 4, None, "村居网格、铝型材企业、专业市场、镇级工程"),
    u("佛山市南海区里水镇人民政府", "Lishui Town Government", "lishui", "11", 3, None, "村居网格、袜业企业、农业园区、镇级工程"),
    u("佛山市南海区人民武装部", "People's Armed Forces Department", "armed_forces", "11", 2, None, "民兵、征兵报名、国防教育、预备役人员"),
    u("中共佛山市南海区委组织部", "Organisation Department", "organisation", "11", 3, None, "基层党组织、党员、干部任免、人才工作"),
];

/// The district's units with stable codes: the same for every seed, so tests, demos and
/// documentation can name them.
pub fn units() -> Vec<Unit> {
    UNITS
        .iter()
        .enumerate()
        .map(|(i, d)| Unit {
            code: unit_code(i, d.category),
            name: d.name.to_string(),
            name_en: d.name_en.to_string(),
            slug: d.slug.to_string(),
            parent: d
                .parent
                .map(|p| unit_code(unit_index(p), UNITS[unit_index(p)].category)),
        })
        .collect()
}

pub fn unit_index(slug: &str) -> usize {
    UNITS
        .iter()
        .position(|d| d.slug == slug)
        .unwrap_or_else(|| panic!("unknown unit slug {slug}"))
}

fn unit_code(index: usize, category: &str) -> String {
    let body = format!("{:08}", 7_520_0000 + index * 131);
    credit_code::build(category, 440605, body.as_bytes().try_into().expect("8 digits"))
}

pub const DISTRICT_REGION: u32 = 440605;
/// Regions people are born in: Nanhai and its neighbours, and the provinces migrants come from.
pub const BIRTH_REGIONS: [(u32, u32); 10] = [
    (440605, 55),
    (440604, 10),
    (440606, 8),
    (440607, 3),
    (440103, 4),
    (430421, 5),
    (450802, 5),
    (360721, 4),
    (510522, 3),
    (441223, 3),
];

pub const TOWNS: [&str; 7] = ["桂城街道", "九江镇", "西樵镇", "丹灶镇", "狮山镇", "大沥镇", "里水镇"];
/// Rough centre (latitude, longitude) of each town, for coordinates.
pub const TOWN_CENTRES: [(f64, f64); 7] = [
    (23.031, 113.152),
    (22.847, 113.036),
    (22.936, 112.966),
    (23.045, 112.931),
    (23.126, 113.012),
    (23.113, 113.141),
    (23.198, 113.143),
];
pub const COMMUNITIES: [[&str; 4]; 7] = [
    ["平洲社区", "夏北社区", "叠滘社区", "灯湖社区"],
    ["沙头社区", "儒林社区", "下西社区", "南金村"],
    ["樵园社区", "民乐村", "太平村", "简村村"],
    ["丹灶社区", "金沙社区", "仙岗村", "西城村"],
    ["小塘社区", "罗村社区", "官窑社区", "松岗社区"],
    ["大沥社区", "盐步社区", "黄岐社区", "凤池社区"],
    ["里水社区", "和顺社区", "大冲村", "草场村"],
];
pub const ROADS: [&str; 16] = [
    "南海大道", "桂澜路", "海八路", "佛平路", "广佛路", "狮山大道", "南国路", "樵金路", "沿江路",
    "工业大道", "建设路", "人民路", "新城路", "和谐路", "兴业路", "振兴路",
];

pub const SURNAMES: [(&str, u32); 30] = [
    ("陈", 120), ("梁", 60), ("黄", 60), ("李", 55), ("何", 40), ("张", 35), ("罗", 25),
    ("林", 25), ("吴", 25), ("关", 20), ("潘", 20), ("冯", 25), ("区", 12), ("邓", 20),
    ("麦", 15), ("叶", 15), ("谢", 15), ("卢", 15), ("杨", 15), ("周", 12), ("刘", 20),
    ("郭", 10), ("钟", 12), ("苏", 10), ("曾", 10), ("蔡", 8), ("庞", 8), ("招", 6),
    ("谭", 10), ("岑", 6),
];
pub const MALE_GIVEN: &str = "伟强明华军建国志勇杰文斌俊辉锦荣家豪永健炳坤达成光耀德庆振宇浩然嘉乐";
pub const FEMALE_GIVEN: &str = "丽芳美玲秀英慧敏婷燕红霞静雯欣怡嘉琪佩珊淑贞凤仪晓彤倩颖诗韵";
/// Simplified → traditional pairs, for variant spellings of names.
pub const TRADITIONAL: [(char, char); 16] = [
    ('陈', '陳'), ('黄', '黃'), ('李', '李'), ('张', '張'), ('罗', '羅'), ('吴', '吳'),
    ('关', '關'), ('冯', '馮'), ('邓', '鄧'), ('叶', '葉'), ('谢', '謝'), ('卢', '盧'),
    ('伟', '偉'), ('华', '華'), ('军', '軍'), ('国', '國'),
];

pub const TRADE_NAMES: &str = "宏达锦华顺兴联合金盛永利恒昌信誉新兴华美利民广发鸿运泰丰建业万通天成汇丰荣达创新东方南方友谊和平凯旋骏马精工力拓";
pub const INDUSTRIES: [(&str, &str, f64); 12] = [
    // (trade word, industry category, kWh per 10,000 yuan of tax)
    ("五金制品", "制造业", 3200.0),
    ("铝型材", "制造业", 5200.0),
    ("陶瓷", "制造业", 6100.0),
    ("纺织", "制造业", 4100.0),
    ("家具", "制造业", 2600.0),
    ("塑料制品", "制造业", 3900.0),
    ("电器", "制造业", 2300.0),
    ("食品", "制造业", 2100.0),
    ("物流", "交通运输、仓储和邮政业", 900.0),
    ("贸易", "批发和零售业", 300.0),
    ("餐饮管理", "住宿和餐饮业", 1500.0),
    ("信息科技", "信息传输、软件和信息技术服务业", 250.0),
];
pub const COMPANY_SUFFIXES: [&str; 3] = ["有限公司", "有限责任公司", "股份有限公司"];
pub const POSITIONS: [&str; 6] = ["科员", "副主任科员", "主任科员", "副科长", "科长", "副局长"];
pub const ETHNIC: [(&str, u32); 4] = [("汉族", 97), ("壮族", 1), ("瑶族", 1), ("土家族", 1)];
