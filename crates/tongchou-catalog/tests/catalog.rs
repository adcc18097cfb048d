//! The catalog against the simulated district: registration, search, workbooks, versions,
//! permissions and inference, on a real data directory.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use tongchou_catalog::{Actor, Batch, Catalog, CatalogError, SearchQuery, sample};
use tongchou_model::{ShareType, UserRole};
use tongchou_store::DataDir;

struct Fixture {
    _tmp: tempfile::TempDir,
    catalog: Catalog,
    district: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let district = tmp.path().join("district");
    tongchou_sim::generate(tongchou_sim::Scale::Tiny, 11, &district, &()).unwrap();
    let dir = DataDir::init(&tmp.path().join("data")).await.unwrap();
    let catalog = Catalog::open(dir).await.unwrap();
    let batch = Batch::from_json(&std::fs::read(district.join("catalog.json")).unwrap()).unwrap();
    catalog.register(batch, &Actor::Operator).await.unwrap();
    Fixture {
        _tmp: tmp,
        catalog,
        district,
    }
}

fn truth(district: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(district.join("ground_truth.json")).unwrap()).unwrap()
}

fn query(text: &str) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        limit: 10,
        ..Default::default()
    }
}

fn unit_code(slug: &str) -> String {
    tongchou_sim::units()
        .into_iter()
        .find(|u| u.slug == slug)
        .unwrap()
        .code
}

#[tokio::test]
async fn the_district_registers_whole_and_the_inventory_adds_up() {
    let f = fixture().await;
    let t = truth(&f.district);
    let inv = f.catalog.inventory().await.unwrap();
    assert_eq!(inv.units, 65);
    assert_eq!(inv.resources, t["inventory"]["resources"].as_i64().unwrap());
    assert_eq!(inv.fields, t["inventory"]["fields"].as_i64().unwrap());
    assert_eq!(inv.by_share_type.values().sum::<i64>(), inv.resources);
    assert_eq!(inv.resources_without_data, inv.resources);
    let registered: i64 = inv.per_unit.iter().filter(|u| u.resources > 0).count() as i64;
    assert_eq!(registered + inv.units_without_resources.len() as i64, 65);
    assert!(inv.units_without_resources.iter().all(|u| u.resources == 0));
}

#[tokio::test]
async fn chinese_search_finds_by_keywords_abbreviations_and_filters() {
    let f = fixture().await;
    let hits = f.catalog.search(&query("社保 欠费")).await.unwrap();
    assert_eq!(hits[0].name, "社会保险费欠缴明细", "{hits:?}");
    assert_eq!(hits[0].unit, unit_code("social_insurance"));
    for (q, expected) in [
        ("出入境", "出入境记录"),
        ("不动产 登记", "不动产登记信息"),
        ("户籍 人口", "户籍人口信息"),
        ("用电", "用电客户信息"),
        ("营业执照", "营业执照信息"),
        ("公职人员", "公职人员名册"),
        ("摊贩", "流动摊贩巡查记录"),
    ] {
        let hits = f.catalog.search(&query(q)).await.unwrap();
        assert!(
            hits.iter().take(3).any(|h| h.name == expected),
            "{q}: {:?}",
            hits.iter().map(|h| &h.name).collect::<Vec<_>>()
        );
    }
    // A field label finds the resources that hold it; English words find units and field names.
    let hits = f.catalog.search(&query("统一社会信用代码")).await.unwrap();
    assert!(hits.len() >= 5);
    let hits = f.catalog.search(&query("credit_code")).await.unwrap();
    assert!(!hits.is_empty());
    let hits = f.catalog.search(&query("Social Insurance")).await.unwrap();
    assert!(hits.iter().any(|h| h.unit == unit_code("social_insurance")));
    // Filters.
    let mut q = query("信息");
    q.share_type = Some(ShareType::Unconditional);
    q.limit = 100;
    let hits = f.catalog.search(&q).await.unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.share_type == "unconditional"));
    let mut q = query("");
    q.unit = Some(unit_code("tax"));
    q.limit = 100;
    let hits = f.catalog.search(&q).await.unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.unit == unit_code("tax")));
    assert!(
        f.catalog
            .search(&query("量子引力波望远镜"))
            .await
            .unwrap()
            .is_empty()
    );
}

fn resource_json(unit: &str, name: &str) -> Value {
    json!({"unit": unit, "name": name, "abstract": "测试", "share_type": "unconditional", "open_type": "none",
           "update_cycle": "monthly", "tags": ["测试"],
           "fields": [{"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "required": true}]})
}

#[tokio::test]
async fn bad_batches_register_nothing() {
    let f = fixture().await;
    let before = f.catalog.inventory().await.unwrap().resources;
    let existing = f.catalog.all_records().await.unwrap()[0]
        .resource
        .code
        .clone()
        .unwrap();
    let tax = unit_code("tax");
    let mut dup = resource_json(&tax, "重复代码资源");
    dup["code"] = json!(existing);
    let batch = json!([
        resource_json(&tax, "一个好资源"),
        dup,
        resource_json("914406050000000000", "无主资源"),
        resource_json(&tax, "一个好资源")
    ]);
    let err = f
        .catalog
        .register(
            Batch::from_json(batch.to_string().as_bytes()).unwrap(),
            &Actor::Operator,
        )
        .await
        .unwrap_err();
    let CatalogError::Rejected(problems) = err else {
        panic!("{err}")
    };
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|p| p.starts_with("资源 2") && p.contains("already registered")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|p| p.starts_with("资源 3") && p.contains("is not registered")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|p| p.starts_with("资源 4") && p.contains("already has a resource named")),
        "{text:?}"
    );
    assert_eq!(f.catalog.inventory().await.unwrap().resources, before);
    assert!(
        f.catalog
            .search(&query("一个好资源"))
            .await
            .unwrap()
            .is_empty()
    );
    let codes = f
        .catalog
        .register(
            Batch::from_json(resource_json(&tax, "一个好资源").to_string().as_bytes()).unwrap(),
            &Actor::Operator,
        )
        .await
        .unwrap();
    assert!(
        codes[0].ends_with(&format!("/{:06}", before + 1)),
        "{codes:?}"
    );
    assert_eq!(
        f.catalog.search(&query("一个好资源")).await.unwrap()[0].code,
        codes[0]
    );
}

#[tokio::test]
async fn stewards_register_only_for_their_unit() {
    let f = fixture().await;
    let (tax, health) = (unit_code("tax"), unit_code("health"));
    let steward = Actor::User {
        name: "税务管理员".into(),
        unit: tax.clone(),
        role: UserRole::Steward,
    };
    let own = Batch::from_json(resource_json(&tax, "纳税信用等级").to_string().as_bytes()).unwrap();
    assert!(f.catalog.register(own, &steward).await.is_ok());
    let other = Batch::from_json(
        resource_json(&health, "医疗机构名录2")
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let err = f.catalog.register(other, &steward).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("may not register resources of unit"),
        "{err}"
    );
    let analyst = Actor::User {
        name: "分析员".into(),
        unit: tax.clone(),
        role: UserRole::Analyst,
    };
    let batch =
        Batch::from_json(resource_json(&tax, "分析员的资源").to_string().as_bytes()).unwrap();
    assert!(f.catalog.register(batch, &analyst).await.is_err());
    let units = vec![tongchou_model::Unit {
        code: "11440605MB2C12345X".into(),
        name: "新单位".into(),
        name_en: "New".into(),
        slug: "new_unit".into(),
        parent: None,
    }];
    assert!(matches!(
        f.catalog.add_units(&units, &steward).await,
        Err(CatalogError::Forbidden(_))
    ));
}

#[tokio::test]
async fn every_change_is_a_version_that_can_be_compared() {
    let f = fixture().await;
    let record = f
        .catalog
        .search(&query("社保 欠费"))
        .await
        .unwrap()
        .remove(0);
    let mut resource = f.catalog.get(&record.code).await.unwrap().resource;
    resource.share_type = ShareType::Unconditional;
    resource.share_condition = None;
    let mut phone = resource.fields[0].clone();
    phone.name = "contact_phone".into();
    phone.label = "联系电话".into();
    resource.fields.push(phone);
    let version = f
        .catalog
        .update(&record.code, resource.clone(), &Actor::Operator)
        .await
        .unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        f.catalog
            .update(&record.code, resource, &Actor::Operator)
            .await
            .unwrap(),
        2,
        "no change, no version"
    );
    let history = f.catalog.history(&record.code).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[1].summary.contains("share_type"));
    let changes = f.catalog.diff(&record.code, 1, 2).await.unwrap();
    let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
    assert!(
        paths.contains(&"share_type")
            && paths.contains(&"share_condition")
            && paths.contains(&"fields.contact_phone"),
        "{paths:?}"
    );
    let share = changes.iter().find(|c| c.path == "share_type").unwrap();
    assert_eq!(
        (share.from.clone(), share.to.clone()),
        (json!("conditional"), json!("unconditional"))
    );
    let hits = f
        .catalog
        .search(&SearchQuery {
            text: "社保 欠费".into(),
            share_type: Some(ShareType::Unconditional),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        hits[0].code, record.code,
        "the index follows the new version"
    );
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    {
        let catalog = Catalog::open(DataDir::init(&root).await.unwrap())
            .await
            .unwrap();
        let units = tongchou_sim::units();
        catalog.add_units(&units, &Actor::Operator).await.unwrap();
        let batch = Batch::from_json(
            resource_json(&units[0].code, "办公用房台账")
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        catalog.register(batch, &Actor::Operator).await.unwrap();
    }
    std::fs::remove_dir_all(root.join("index/catalog")).unwrap();
    let catalog = Catalog::open(DataDir::open(&root).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        catalog.search(&query("办公用房")).await.unwrap()[0].name,
        "办公用房台账"
    );
}

/// Writes a workbook in the template's shape from rows of cells.
fn workbook(
    resources: &[&[&str]],
    fields: &[&[&str]],
    extra: Option<&str>,
    merge: bool,
) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    for (name, rows) in [("信息资源", resources), ("信息项", fields)] {
        let sheet = wb.add_worksheet().set_name(name).unwrap();
        for (r, row) in rows.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                if !cell.is_empty() {
                    sheet.write_string(r as u32, c as u16, *cell).unwrap();
                }
            }
        }
        if merge && name == "信息项" {
            sheet
                .merge_range(2, 0, 3, 0, "社保缴费", &rust_xlsxwriter::Format::new())
                .unwrap();
        }
    }
    if let Some(extra) = extra {
        wb.add_worksheet().set_name(extra).unwrap();
    }
    wb.save_to_buffer().unwrap()
}

const RES_HEADER: &[&str] = &[
    "资源代码",
    "资源名称",
    "提供单位代码",
    "资源摘要",
    "共享类型",
    "共享条件",
    "共享依据",
    "开放类型",
    "更新周期",
    "标签",
];
const FIELD_HEADER: &[&str] = &[
    "资源名称",
    "信息项名称",
    "中文名称",
    "数据类型",
    "识别类型",
    "必填",
    "敏感级别",
    "精度",
    "小数位数",
];

#[tokio::test]
async fn a_filled_in_workbook_registers_and_bad_ones_are_reported_by_row() {
    let f = fixture().await;
    let template = tongchou_catalog::workbook::template().unwrap();
    assert!(
        matches!(Batch::from_workbook(&template), Err(p) if p[0].message.contains("has no resource rows"))
    );
    let unit = unit_code("agriculture");
    let good = workbook(
        &[
            RES_HEADER,
            &[
                "",
                "农业补贴发放台账",
                &unit,
                "各镇街农业补贴发放",
                "有条件共享",
                "核查补贴",
                "《农业补贴管理办法》",
                "不予开放",
                "每月",
                "补贴;农业",
            ],
        ],
        &[
            FIELD_HEADER,
            &[
                "农业补贴发放台账",
                "person_id",
                "公民身份号码",
                "字符型",
                "公民身份号码",
                "是",
                "",
            ],
            &[
                "农业补贴发放台账",
                "amount",
                "补贴金额",
                "数值型",
                "",
                "否",
                "内部",
                "18",
                "2",
            ],
        ],
        None,
        false,
    );
    let batch = Batch::from_workbook(&good).unwrap();
    let codes = f.catalog.register(batch, &Actor::Operator).await.unwrap();
    let record = f.catalog.get(&codes[0]).await.unwrap();
    assert_eq!(
        record.resource.fields[0].default_mask.as_deref(),
        Some("citizen_id")
    );
    assert_eq!(record.resource.tags, vec!["补贴", "农业"]);
    assert_eq!(
        record.resource.fields[1].decimal_type().to_string(),
        "decimal(18,2)"
    );
    assert_eq!(
        f.catalog.search(&query("农业 补贴")).await.unwrap()[0].code,
        codes[0]
    );

    let bad_values = workbook(
        &[
            RES_HEADER,
            &[
                "",
                "低保对象名册",
                &unit,
                "",
                "部分共享",
                "",
                "",
                "不予开放",
                "每小时",
                "",
            ],
        ],
        &[
            FIELD_HEADER,
            &["低保对象名册", "name", "姓名", "", "", "", ""],
            &[
                "低保对象名册",
                "身份证",
                "公民身份号码",
                "字符型",
                "",
                "",
                "",
            ],
            &["不存在的资源", "x", "某列", "字符型", "", "", ""],
        ],
        None,
        false,
    );
    let problems: Vec<String> = Batch::from_workbook(&bad_values)
        .and_then(Batch::checked)
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    let expected = "信息项 第4行, 资源名称: '不存在的资源' is not a resource name";
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "{expected}: {problems:?}"
    );
    let missing_resource = workbook(
        &[
            RES_HEADER,
            &[
                "",
                "低保对象名册",
                &unit,
                "",
                "部分共享",
                "",
                "",
                "不予开放",
                "每小时",
                "",
            ],
        ],
        &[
            FIELD_HEADER,
            &["低保对象名册", "name", "姓名", "", "", "", ""],
            &[
                "低保对象名册",
                "身份证",
                "公民身份号码",
                "字符型",
                "",
                "",
                "",
            ],
        ],
        None,
        false,
    );
    let problems: Vec<String> = Batch::from_workbook(&missing_resource)
        .and_then(Batch::checked)
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    for expected in [
        "信息资源 第2行 「低保对象名册」, share_type: '部分共享' is not one of",
        "update_cycle: '每小时'",
        "信息项 第2行 「低保对象名册」, (name): type is required",
        "信息项 第3行 「低保对象名册」, (身份证): name '身份证' must start with a letter",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    let no_type_column = workbook(
        &[RES_HEADER],
        &[&["资源名称", "信息项名称", "中文名称"]],
        None,
        false,
    );
    let problems = Batch::from_workbook(&no_type_column)
        .and_then(Batch::checked)
        .unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.field.as_deref() == Some("数据类型")
                && p.message.contains("required column is missing")),
        "{problems:?}"
    );
    let extra = workbook(&[RES_HEADER], &[FIELD_HEADER], Some("Sheet3"), false);
    assert!(
        Batch::from_workbook(&extra)
            .and_then(Batch::checked)
            .unwrap_err()[0]
            .message
            .contains("extra sheet 'Sheet3'")
    );
    let merged = workbook(
        &[
            RES_HEADER,
            &[
                "",
                "低保",
                &unit,
                "",
                "无条件共享",
                "",
                "",
                "不予开放",
                "每月",
                "",
            ],
        ],
        &[FIELD_HEADER],
        None,
        true,
    );
    assert!(
        Batch::from_workbook(&merged)
            .and_then(Batch::checked)
            .unwrap_err()[0]
            .message
            .contains("A3:A4 are merged")
    );
    assert!(
        Batch::from_workbook(b"not a workbook")
            .and_then(Batch::checked)
            .unwrap_err()[0]
            .message
            .contains("not an .xlsx workbook")
    );
}

#[tokio::test]
async fn exported_catalog_round_trips_through_the_workbook() {
    let f = fixture().await;
    let records = f.catalog.all_records().await.unwrap();
    let resources: Vec<_> = records
        .iter()
        .take(10)
        .map(|r| r.resource.clone())
        .collect();
    let bytes = tongchou_catalog::workbook::export(&resources).unwrap();
    let batch = Batch::from_workbook(&bytes).unwrap();
    let back: Vec<_> = batch.resources.into_iter().map(|(_, r)| r).collect();
    assert_eq!(back, resources);
}

/// Inference against the simulated district's truth: every export's columns, by role.
#[tokio::test]
async fn inference_finds_identifiers_with_high_precision_and_recall() {
    let f = fixture().await;
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(f.district.join("manifest.json")).unwrap()).unwrap();
    let mut counts: HashMap<&str, (usize, usize, usize)> = HashMap::new(); // (tp, fp, fn)
    for entry in manifest["exports"].as_array().unwrap() {
        let file = f.district.join(entry["file"].as_str().unwrap());
        if entry["format"] == "ndjson" {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let sample = sample::read(file.to_str().unwrap(), &bytes, None, 10_000).unwrap();
        assert_eq!(
            sample.header_row as u64,
            entry["header_row"].as_u64().unwrap(),
            "{}",
            file.display()
        );
        let inferred = tongchou_catalog::infer::infer(&sample);
        let truth = f
            .catalog
            .get(entry["resource_code"].as_str().unwrap())
            .await
            .unwrap()
            .resource;
        for (field, suggestion) in truth.fields.iter().zip(&inferred.fields) {
            assert_eq!(field.label, suggestion.label);
            for role in ["person_id", "enterprise_id", "phone"] {
                let actual = field.role.map(|r| r.as_str()) == Some(role);
                let predicted = suggestion.role.map(|r| r.as_str()) == Some(role);
                let c = counts.entry(role).or_default();
                match (actual, predicted) {
                    (true, true) => c.0 += 1,
                    (false, true) => c.1 += 1,
                    (true, false) => c.2 += 1,
                    _ => {}
                }
            }
        }
    }
    for (role, (tp, fp, fn_)) in counts {
        let precision = tp as f64 / (tp + fp) as f64;
        let recall = tp as f64 / (tp + fn_) as f64;
        assert!(
            tp > 5 && precision >= 0.98 && recall >= 0.98,
            "{role}: precision {precision:.3}, recall {recall:.3} ({tp} tp, {fp} fp, {fn_} fn)"
        );
    }
}
