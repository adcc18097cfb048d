//! Checks a generated `tiny` district against its own ground truth: every planted case is
//! really in the exports, and nothing unplanted looks like one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use calamine::{Data, Reader};
use serde_json::Value;
use tongchou_ids::{citizen_id, credit_code};
use tongchou_sim::Scale;

struct District {
    _dir: tempfile::TempDir,
    root: PathBuf,
    truth: Value,
    manifest: Value,
    catalog: Value,
}

fn district() -> &'static District {
    static DISTRICT: OnceLock<District> = OnceLock::new();
    DISTRICT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("district");
        tongchou_sim::generate(Scale::Tiny, 7, &root, &()).unwrap();
        let read =
            |name: &str| serde_json::from_slice(&std::fs::read(root.join(name)).unwrap()).unwrap();
        District {
            truth: read("ground_truth.json"),
            manifest: read("manifest.json"),
            catalog: read("catalog.json"),
            root,
            _dir: dir,
        }
    })
}

/// An export read back the way a person would see it: rows by line (or sheet row), as
/// label → value.
struct Table {
    labels: Vec<String>,
    names: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    fn col(&self, label: &str) -> usize {
        self.labels
            .iter()
            .position(|l| l == label)
            .unwrap_or_else(|| panic!("no column {label}"))
    }

    fn column<'a>(&'a self, label: &str) -> impl Iterator<Item = &'a str> + 'a {
        let c = self.col(label);
        self.rows.iter().map(move |(_, r)| r[c].as_str())
    }

    fn line(&self, line: u64) -> &Vec<String> {
        &self
            .rows
            .iter()
            .find(|(l, _)| *l == line)
            .unwrap_or_else(|| panic!("no line {line}"))
            .1
    }
}

fn export_named(name: &str) -> Table {
    let d = district();
    let resource = d.catalog["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap();
    let code = resource["code"].as_str().unwrap();
    let entry = d.manifest["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource_code"] == code)
        .unwrap();
    read_export(&d.root, entry, resource)
}

fn read_export(root: &Path, entry: &Value, resource: &Value) -> Table {
    let path = root.join(entry["file"].as_str().unwrap());
    let header_row = entry["header_row"].as_u64().unwrap();
    let labels: Vec<String> = resource["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["label"].as_str().unwrap().to_string())
        .collect();
    let names: Vec<String> = resource["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let mut rows = Vec::new();
    match entry["format"].as_str().unwrap() {
        "csv" => {
            let bytes = std::fs::read(&path).unwrap();
            let text = match entry["encoding"].as_str().unwrap() {
                "gbk" => {
                    let (text, _, errors) = encoding_rs::GBK.decode(&bytes);
                    assert!(!errors, "{} is not valid GBK", path.display());
                    assert!(
                        std::str::from_utf8(&bytes).is_err(),
                        "{} should not also be UTF-8",
                        path.display()
                    );
                    text.into_owned()
                }
                "utf8-bom" => {
                    String::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").expect("BOM").to_vec())
                        .unwrap()
                }
                _ => String::from_utf8(bytes).unwrap(),
            };
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(text.as_bytes());
            for (i, record) in reader.records().enumerate() {
                let record = record.unwrap();
                let line = i as u64 + 1;
                if line == header_row {
                    assert_eq!(
                        record.iter().collect::<Vec<_>>(),
                        labels,
                        "header of {}",
                        path.display()
                    );
                } else if line > header_row {
                    rows.push((line, record.iter().map(str::to_string).collect()));
                }
            }
        }
        "xlsx" => {
            let mut workbook = calamine::open_workbook_auto(&path).unwrap();
            let range = workbook
                .worksheet_range(entry["sheet"].as_str().unwrap())
                .unwrap();
            let start = range.start().unwrap().0 as u64;
            for (i, row) in range.rows().enumerate() {
                let line = start + i as u64 + 1;
                let values: Vec<String> = row
                    .iter()
                    .map(|c| match c {
                        Data::Empty => String::new(),
                        Data::Float(f) if f.fract() == 0.0 => format!("{f:.0}"),
                        other => other.to_string(),
                    })
                    .collect();
                if line == header_row {
                    assert_eq!(values, labels);
                } else if line > header_row {
                    rows.push((line, values));
                }
            }
        }
        "ndjson" => {
            for (i, text) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                let object: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
                let values = names
                    .iter()
                    .map(|n| match &object[n] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .collect();
                rows.push((i as u64 + 1, values));
            }
        }
        other => panic!("unknown format {other}"),
    }
    assert_eq!(
        rows.len() as u64,
        entry["rows"].as_u64().unwrap(),
        "row count of {}",
        path.display()
    );
    Table {
        labels,
        names,
        rows,
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let again = dir.path().join("again");
    tongchou_sim::generate(Scale::Tiny, 7, &again, &()).unwrap();
    let first = files(&district().root);
    let second = files(&again);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &first {
        assert!(
            bytes == &second[name],
            "{name} differs between two runs with one seed"
        );
    }
    let other = dir.path().join("other");
    tongchou_sim::generate(Scale::Tiny, 8, &other, &()).unwrap();
    assert_ne!(
        files(&other)["ground_truth.json"],
        first["ground_truth.json"]
    );
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn nanhai_inventory_matches_the_seed_article_for_any_seed() {
    for seed in [1, 2015, 99_999] {
        assert_eq!(
            tongchou_sim::inventory(Scale::Nanhai, seed),
            (65, 1_083, 12_706)
        );
    }
    let (units, resources, _) = tongchou_sim::inventory(Scale::Small, 1);
    assert_eq!((units, resources), (65, 300));
}

#[test]
fn catalog_and_truth_agree_on_the_inventory() {
    let d = district();
    let inventory = &d.truth["inventory"];
    let units = d.catalog["units"].as_array().unwrap();
    let resources = d.catalog["resources"].as_array().unwrap();
    assert_eq!(units.len(), 65);
    assert_eq!(inventory["units"], 65);
    assert_eq!(
        inventory["resources"].as_u64().unwrap() as usize,
        resources.len()
    );
    let fields: usize = resources
        .iter()
        .map(|r| r["fields"].as_array().unwrap().len())
        .sum();
    assert_eq!(inventory["fields"].as_u64().unwrap() as usize, fields);
    let codes: HashSet<&str> = resources
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), resources.len(), "resource codes are unique");
    for u in units {
        assert_eq!(
            credit_code::validate(u["code"].as_str().unwrap()),
            Ok(()),
            "unit code of {}",
            u["name"]
        );
    }
    let names: HashSet<&str> = units.iter().map(|u| u["name"].as_str().unwrap()).collect();
    for expected in [
        "佛山市南海区科学技术局",
        "佛山市南海区人民检察院",
        "佛山市南海区纪委监委",
        "国家税务总局佛山市南海区税务局",
        "广东电网有限责任公司佛山南海供电局",
    ] {
        assert!(names.contains(expected), "{expected} is one of the units");
    }
    let records: u64 = d.manifest["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(inventory["records"].as_u64().unwrap(), records);
}

#[test]
fn identifiers_are_mostly_valid_and_every_invalid_one_is_in_the_truth() {
    let d = district();
    let mut planted: HashSet<(String, u64, String)> = HashSet::new();
    for row in d.truth["invalid_rows"].as_array().unwrap() {
        planted.insert((
            row["file"].as_str().unwrap().into(),
            row["line"].as_u64().unwrap(),
            row["field"].as_str().unwrap().into(),
        ));
    }
    let (mut valid, mut invalid) = (0usize, 0usize);
    let resources = d.catalog["resources"].as_array().unwrap();
    for entry in d.manifest["exports"].as_array().unwrap() {
        let resource = resources
            .iter()
            .find(|r| r["code"] == entry["resource_code"])
            .unwrap();
        let table = read_export(&d.root, entry, resource);
        for (c, f) in resource["fields"].as_array().unwrap().iter().enumerate() {
            let check: fn(&str) -> bool = match f["role"].as_str() {
                Some("person_id") => |s| citizen_id::validate(s).is_ok(),
                Some("enterprise_id") => |s| credit_code::validate(s).is_ok(),
                _ => continue,
            };
            for (line, row) in &table.rows {
                if row[c].is_empty() {
                    continue;
                }
                let key = (
                    entry["file"].as_str().unwrap().to_string(),
                    *line,
                    table.names[c].clone(),
                );
                if check(&row[c]) {
                    valid += 1;
                    assert!(
                        !planted.contains(&key),
                        "{key:?} is listed as invalid but validates"
                    );
                } else {
                    invalid += 1;
                    assert!(
                        planted.contains(&key),
                        "{key:?} = {} is invalid but not in the ground truth",
                        row[c]
                    );
                }
            }
        }
    }
    assert_eq!(invalid, planted.len());
    let share = valid as f64 / (valid + invalid) as f64;
    assert!(
        invalid > 10 && (0.99..0.9995).contains(&share),
        "valid share {share}, {invalid} invalid"
    );
}

#[test]
fn arrears_applicants_applied_and_owe() {
    let funding = export_named("科技项目资助申请");
    let arrears = export_named("社会保险费欠缴明细");
    let owing: HashSet<&str> = arrears.column("统一社会信用代码").collect();
    let cases = district().truth["scenarios"]["arrears_applicants"]
        .as_array()
        .unwrap();
    assert_eq!(cases.len(), 5);
    let c_no = funding.col("申请编号");
    let c_code = funding.col("统一社会信用代码");
    let mut found = 0;
    for (_, row) in &funding.rows {
        let listed = cases.iter().any(|c| {
            c["application_no"] == row[c_no].as_str() && c["credit_code"] == row[c_code].as_str()
        });
        assert_eq!(
            listed,
            owing.contains(row[c_code].as_str()),
            "application {} vs arrears list",
            row[c_no]
        );
        found += usize::from(listed);
    }
    assert_eq!(found, cases.len());
}

#[test]
fn officials_wife_brothers_suddenly_own_properties() {
    let t = &district().truth["scenarios"]["relative_property_surges"];
    let roster = export_named("公职人员名册");
    let marriages = export_named("婚姻登记信息");
    let household = export_named("户籍人口信息");
    let property = export_named("不动产登记信息");
    let officials: HashSet<&str> = roster.column("公民身份号码").collect();
    let mother: HashMap<&str, &str> = household
        .column("公民身份号码")
        .zip(household.column("母亲公民身份号码"))
        .collect();
    let gender: HashMap<&str, &str> = household
        .column("公民身份号码")
        .zip(household.column("性别"))
        .collect();
    let couples: HashSet<(&str, &str)> = marriages
        .column("男方公民身份号码")
        .zip(marriages.column("女方公民身份号码"))
        .collect();
    let cases = t.as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let (official, wife, relative) = (
            case["official_id"].as_str().unwrap(),
            case["wife_id"].as_str().unwrap(),
            case["relative_id"].as_str().unwrap(),
        );
        assert!(officials.contains(official));
        assert!(
            couples.contains(&(official, wife)),
            "marriage of the official is registered"
        );
        assert!(
            !mother[wife].is_empty() && mother[wife] == mother[relative],
            "wife and relative share a mother"
        );
        assert_eq!(gender[relative], "男");
        let certs: Vec<&str> = strs(&case["certificates"]);
        let owned: Vec<&str> = property
            .column("不动产权证号")
            .zip(property.column("权利人证件号"))
            .filter(|(_, o)| *o == relative)
            .map(|(c, _)| c)
            .collect();
        for c in &certs {
            assert!(owned.contains(c), "{c} registered to the relative");
        }
        assert!(certs.len() >= 3);
    }
    // Nobody else acquires three properties within a year.
    let mut by_owner: HashMap<&str, Vec<jiff::civil::Date>> = HashMap::new();
    for (owner, day) in property
        .column("权利人证件号")
        .zip(property.column("登记日期"))
    {
        if !owner.is_empty() {
            by_owner.entry(owner).or_default().push(parse_day(day));
        }
    }
    let surging: HashSet<&str> = by_owner
        .iter()
        .filter(|(_, days)| {
            days.iter().any(|d| {
                days.iter()
                    .filter(|e| **e >= *d && (**e - *d).get_days() <= 365)
                    .count()
                    >= 3
            })
        })
        .map(|(o, _)| *o)
        .collect();
    let planted: HashSet<&str> = cases
        .iter()
        .map(|c| c["relative_id"].as_str().unwrap())
        .collect();
    assert_eq!(surging, planted);
}

fn parse_day(text: &str) -> jiff::civil::Date {
    let digits: Vec<i32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    jiff::civil::Date::new(digits[0] as i16, digits[1] as i8, digits[2] as i8)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn dates_come_in_three_styles() {
    let property = export_named("不动产登记信息");
    let days: Vec<&str> = property.column("登记日期").collect();
    assert!(days.iter().any(|d| d.contains('年')));
    assert!(days.iter().any(|d| d.contains('/')));
    assert!(
        days.iter()
            .any(|d| d.len() == 10 && d.as_bytes()[4] == b'-')
    );
}

#[test]
fn tax_is_out_of_line_with_electricity_only_for_the_planted() {
    let d = district();
    let tax = export_named("企业纳税申报信息");
    let usage = export_named("月度用电量");
    let registry = export_named("企业登记信息");
    let mut paid: HashMap<&str, f64> = HashMap::new();
    for (code, amount) in tax.column("纳税人识别号").zip(tax.column("实缴税额(元)")) {
        *paid.entry(code).or_default() += amount.parse::<f64>().unwrap();
    }
    let mut kwh: HashMap<&str, f64> = HashMap::new();
    for (account, value) in usage.column("户号").zip(usage.column("有功电量(千瓦时)")) {
        *kwh.entry(account).or_default() += value.parse::<f64>().unwrap();
    }
    let trade: HashMap<&str, &str> = registry
        .column("统一社会信用代码")
        .zip(registry.column("经营范围"))
        .collect();
    let mut ratios: Vec<(&str, &str, f64)> = Vec::new();
    for link in d.truth["electricity_accounts"].as_array().unwrap() {
        let code = link["credit_code"].as_str().unwrap();
        if let (Some(t), Some(k)) = (
            paid.get(code),
            kwh.get(link["account_no"].as_str().unwrap()),
        ) {
            ratios.push((code, trade[code], k / t));
        }
    }
    let planted: HashSet<&str> = d.truth["scenarios"]["tax_electricity_outliers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["credit_code"].as_str().unwrap())
        .collect();
    assert_eq!(planted.len(), 4);
    for (code, industry, ratio) in &ratios {
        let mut peers: Vec<f64> = ratios
            .iter()
            .filter(|(_, i, _)| i == industry)
            .map(|r| r.2)
            .collect();
        peers.sort_by(f64::total_cmp);
        let relative = ratio / peers[peers.len() / 2];
        if planted.contains(code) {
            assert!(
                relative > 4.0,
                "{code} is planted but only {relative:.1}x its peers"
            );
        } else {
            assert!(
                relative < 2.0,
                "{code} is not planted but {relative:.1}x its peers"
            );
        }
    }
}

#[test]
fn vendor_hotspots_stand_out() {
    let t = &district().truth["scenarios"]["vendor_hotspots"];
    let sightings = export_named("流动摊贩巡查记录");
    let points: Vec<(f64, f64)> = sightings
        .column("纬度")
        .zip(sightings.column("经度"))
        .map(|(a, o)| (a.parse().unwrap(), o.parse().unwrap()))
        .collect();
    let near = |lat: f64, lon: f64, r: f64| {
        points
            .iter()
            .filter(|(a, o)| tongchou_sim::distance_m(lat, lon, *a, *o) <= r)
            .count()
    };
    let mut smallest = usize::MAX;
    for h in t.as_array().unwrap() {
        let n = near(
            h["latitude"].as_f64().unwrap(),
            h["longitude"].as_f64().unwrap(),
            h["radius_m"].as_f64().unwrap(),
        );
        assert!(n >= h["sightings"].as_u64().unwrap() as usize);
        smallest = smallest.min(n);
    }
    let centres: Vec<(f64, f64)> = t
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["latitude"].as_f64().unwrap(),
                h["longitude"].as_f64().unwrap(),
            )
        })
        .collect();
    for (a, o) in &points {
        if centres
            .iter()
            .all(|(ca, co)| tongchou_sim::distance_m(*a, *o, *ca, *co) > 500.0)
        {
            assert!(
                near(*a, *o, 150.0) < smallest / 4,
                "an unplanted cluster at {a},{o}"
            );
        }
    }
}

#[test]
fn fake_licences_are_exactly_the_planted_ones() {
    let d = district();
    let registered: HashSet<String> = export_named("营业执照信息")
        .column("执照编号")
        .map(str::to_string)
        .collect();
    let reports = export_named("综合巡查隐患报告");
    let cases: HashMap<&str, &Value> = d.truth["scenarios"]["fake_licences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["report_no"].as_str().unwrap(), c))
        .collect();
    assert_eq!(cases.len(), 6);
    for (no, typed) in reports
        .column("报告编号")
        .zip(reports.column("营业执照号码(现场录入)"))
    {
        match cases.get(no) {
            None => assert!(
                registered.contains(typed),
                "report {no} has unplanted unknown licence {typed}"
            ),
            Some(case) => {
                assert_eq!(case["licence_no_typed"], typed);
                assert!(!registered.contains(typed));
                match case["kind"].as_str().unwrap() {
                    "unregistered" => assert_eq!(credit_code::validate(typed), Ok(())),
                    "bad_checksum" => assert!(credit_code::validate(typed).is_err()),
                    "typo" => {
                        let truth = case["true_code"].as_str().unwrap();
                        assert!(registered.contains(truth));
                        assert_eq!(
                            truth
                                .chars()
                                .zip(typed.chars())
                                .filter(|(a, b)| a != b)
                                .count(),
                            1
                        );
                    }
                    other => panic!("unknown kind {other}"),
                }
            }
        }
    }
}

#[test]
fn frequent_macau_travellers_are_officials_with_forty_trips() {
    let d = district();
    let records = export_named("出入境记录");
    let officials: HashSet<&str> = export_named("公职人员名册")
        .column("公民身份号码")
        .map(|s| Box::leak(s.to_string().into_boxed_str()) as &str)
        .collect();
    let (c_id, c_dir, c_day, c_dest) = (
        records.col("公民身份号码"),
        records.col("出入境类型"),
        records.col("出入境日期"),
        records.col("前往地"),
    );
    let mut trips: HashMap<&str, u32> = HashMap::new();
    for (_, r) in &records.rows {
        if r[c_dir] == "出境" && r[c_dest] == "澳门" && r[c_day].starts_with("2014") {
            *trips.entry(r[c_id].as_str()).or_default() += 1;
        }
    }
    let frequent: HashSet<&str> = trips
        .iter()
        .filter(|(_, n)| **n >= 40)
        .map(|(p, _)| *p)
        .collect();
    let cases = d.truth["scenarios"]["frequent_macau_travellers"]
        .as_array()
        .unwrap();
    let planted: HashSet<&str> = cases
        .iter()
        .map(|c| c["person_id"].as_str().unwrap())
        .collect();
    assert_eq!(frequent, planted);
    for c in cases {
        let id = c["person_id"].as_str().unwrap();
        assert_eq!(u64::from(trips[id]), c["trips"].as_u64().unwrap());
        assert!(officials.contains(id));
    }
}

#[test]
fn parent_child_pairs_hold_in_household_records_and_negatives_do_not() {
    let d = district();
    let household = export_named("户籍人口信息");
    let (c_id, c_f, c_m) = (
        household.col("公民身份号码"),
        household.col("父亲公民身份号码"),
        household.col("母亲公民身份号码"),
    );
    let parents: HashMap<&str, (&str, &str)> = household
        .rows
        .iter()
        .map(|(_, r)| (r[c_id].as_str(), (r[c_f].as_str(), r[c_m].as_str())))
        .collect();
    let s = &d.truth["scenarios"];
    assert_eq!(s["parent_child_pairs"].as_array().unwrap().len(), 50);
    for p in s["parent_child_pairs"].as_array().unwrap() {
        let (father, mother) = parents[p["child_id"].as_str().unwrap()];
        let expected = if p["relation"] == "mother" {
            mother
        } else {
            father
        };
        assert_eq!(expected, p["parent_id"].as_str().unwrap());
    }
    for p in s["non_parent_pairs"].as_array().unwrap() {
        let (father, mother) = parents[p["person_b"].as_str().unwrap()];
        let a = p["person_a"].as_str().unwrap();
        assert!(a != father && a != mother, "{a} is a parent after all");
    }
}

#[test]
fn conflicts_are_where_the_sources_disagree_and_nowhere_else() {
    let d = district();
    let sources = [
        (
            export_named("企业登记信息"),
            "统一社会信用代码",
            ["法定代表人", "住所", "联系电话"],
        ),
        (
            export_named("组织机构代码登记信息"),
            "统一社会信用代码",
            ["法定代表人", "机构地址", "联系电话"],
        ),
        (
            export_named("用人单位参保登记信息"),
            "统一社会信用代码",
            ["法定代表人", "单位地址", "联系电话"],
        ),
    ];
    let attributes = ["legal_representative", "address", "phone"];
    let mut values: HashMap<(String, &str), Vec<String>> = HashMap::new();
    for (table, key, labels) in &sources {
        let k = table.col(key);
        for (a, label) in attributes.iter().zip(labels) {
            let c = table.col(label);
            for (_, r) in &table.rows {
                values
                    .entry((r[k].clone(), a))
                    .or_default()
                    .push(r[c].clone());
            }
        }
    }
    let cases = d.truth["conflicts"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    let planted: HashSet<(String, &str)> = cases
        .iter()
        .map(|c| {
            (
                c["entity_id"].as_str().unwrap().to_string(),
                c["attribute"].as_str().unwrap(),
            )
        })
        .collect();
    for c in cases {
        let key = (
            c["entity_id"].as_str().unwrap().to_string(),
            *attributes.iter().find(|a| c["attribute"] == **a).unwrap(),
        );
        let in_files = &values[&key];
        let in_truth: Vec<&str> = c["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["value"].as_str().unwrap())
            .collect();
        assert_eq!(in_files, &in_truth);
        assert_eq!(
            in_truth.iter().filter(|v| **v == c["true_value"]).count(),
            2,
            "two sources hold the true value"
        );
    }
    for (key, vs) in &values {
        let agree = vs.windows(2).all(|w| w[0] == w[1]);
        assert_eq!(
            !agree,
            planted.contains(&(key.0.clone(), key.1)),
            "{key:?}: {vs:?}"
        );
    }
}

#[test]
fn variant_records_point_at_their_entity() {
    let d = district();
    let accounts = export_named("用电客户信息");
    let property = export_named("不动产登记信息");
    let registry = export_named("企业登记信息");
    let names: HashMap<&str, &str> = registry
        .column("统一社会信用代码")
        .zip(registry.column("企业名称"))
        .collect();
    let dups = d.truth["duplicates"].as_array().unwrap();
    assert!(dups.len() > 20);
    for dup in dups {
        let line = dup["line"].as_u64().unwrap();
        let value = dup["value"].as_str().unwrap();
        if dup["file"].as_str().unwrap().contains("用电客户信息") {
            assert_eq!(accounts.line(line)[accounts.col("户名")], value);
            let registered = names[dup["entity_id"].as_str().unwrap()];
            assert_ne!(registered, value);
        } else {
            let row = property.line(line);
            assert_eq!(row[property.col("权利人")], value);
            let id = &row[property.col("权利人证件号")];
            assert!(id.is_empty() || id == dup["entity_id"].as_str().unwrap());
        }
    }
}

#[test]
fn messy_exports_have_gbk_title_rows_and_sheets() {
    let d = district();
    let exports = d.manifest["exports"].as_array().unwrap();
    let count = |f: &dyn Fn(&Value) -> bool| exports.iter().filter(|e| f(e)).count();
    assert!(count(&|e| e["encoding"] == "gbk") >= 4);
    assert!(count(&|e| e["encoding"] == "utf8-bom") >= 2);
    assert!(count(&|e| e["format"] == "xlsx" && e["header_row"] == 2) >= 4);
    assert!(count(&|e| e["format"] == "csv" && e["header_row"] == 2) >= 1);
    assert!(count(&|e| e["format"] == "ndjson") >= 1);
}

#[test]
fn refuses_an_existing_or_unwritable_output() {
    let d = district();
    let err = tongchou_sim::generate(Scale::Tiny, 1, &d.root, &()).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = tongchou_sim::generate(Scale::Tiny, 1, &file.join("district"), &()).unwrap_err();
    assert!(err.to_string().contains("cannot write into"), "{err}");
}

/// A full disk (a 2 MB tmpfs) fails the run with a clear error and leaves nothing behind.
#[test]
fn a_full_disk_fails_cleanly() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small-disk");
    std::fs::create_dir(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success(), "mount a tmpfs");
    let result = tongchou_sim::generate(Scale::Tiny, 1, &mount.join("district"), &());
    let leftovers: Vec<_> = std::fs::read_dir(&mount).unwrap().collect();
    std::process::Command::new("umount")
        .arg(&mount)
        .status()
        .unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert!(leftovers.is_empty(), "partial output left behind");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
