//! The catalog workbook: how departments really take stock. A steward downloads the
//! template, fills one row per resource on 信息资源 and one row per field on 信息项 in
//! Excel, and uploads it; every problem comes back with its sheet, row and column.

use std::collections::BTreeMap;
use std::io::Cursor;

use calamine::{Reader, Xlsx};
use rust_xlsxwriter::{DataValidation, Format, Workbook, XlsxError};
use serde_json::{Map, Value, json};
use tongchou_model::{
    DataType, OpenType, Resource, Role, Sensitivity, ShareMethod, ShareType, UpdateCycle,
};

use crate::sheet::{self, SheetLimits, cell_name};
use crate::validate::{self, Problem};

pub const RESOURCE_SHEET: &str = "信息资源";
pub const FIELD_SHEET: &str = "信息项";
pub const GUIDE_SHEET: &str = "填写说明";

/// (column header, JSON key, required).
/// A catalog workbook lists resources and fields: a district's whole catalog is some
/// 200,000 cells.
const LIMITS: SheetLimits = SheetLimits {
    max_columns: 64,
    max_sheets: 8,
    max_part_bytes: 64 << 20,
    max_sheet_bytes: 512 << 20,
    max_cells: 2_000_000,
    max_row_bytes: 1 << 20,
};

const RESOURCE_COLUMNS: [(&str, &str, bool); 21] = [
    ("资源代码", "code", false),
    ("资源名称", "name", true),
    ("提供单位代码", "unit", true),
    ("资源摘要", "abstract", false),
    ("类", "class", false),
    ("项", "item", false),
    ("目", "catalog", false),
    ("细目", "subcatalog", false),
    ("资源格式", "format", false),
    ("共享类型", "share_type", true),
    ("共享条件", "share_condition", false),
    ("共享依据", "legal_basis", false),
    ("共享方式", "share_method", false),
    ("开放类型", "open_type", true),
    ("开放条件", "open_condition", false),
    ("更新周期", "update_cycle", true),
    ("发布日期", "published", false),
    ("关联资源代码", "related", false),
    ("标签", "tags", false),
    ("主键信息项", "key", false),
    ("备注", "", false),
];

const FIELD_COLUMNS: [(&str, &str, bool); 13] = [
    ("资源名称", "resource", true),
    ("信息项名称", "name", true),
    ("中文名称", "label", true),
    ("数据类型", "type", true),
    ("描述", "description", false),
    ("识别类型", "role", false),
    ("必填", "required", false),
    ("唯一", "unique", false),
    ("敏感级别", "sensitivity", false),
    ("默认脱敏", "default_mask", false),
    ("允许值", "allowed_values", false),
    ("精度", "precision", false),
    ("小数位数", "scale", false),
];

fn columns<'a>(
    spec: &'a [(&'static str, &'static str, bool)],
) -> impl Iterator<Item = &'a (&'static str, &'static str, bool)> {
    spec.iter().filter(|(h, _, _)| !h.is_empty())
}

fn labels<T: Copy>(all: &[T], label: fn(T) -> &'static str) -> Vec<String> {
    all.iter().map(|v| label(*v).to_string()).collect()
}

/// The empty workbook to fill in, with drop-down lists for every enumeration.
pub fn template() -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let header = Format::new().set_bold().set_background_color("#DDEBF7");
    let required = Format::new().set_bold().set_background_color("#FCE4D6");
    for (sheet_name, spec) in [
        (RESOURCE_SHEET, &RESOURCE_COLUMNS[..]),
        (FIELD_SHEET, &FIELD_COLUMNS[..]),
    ] {
        let sheet = wb.add_worksheet().set_name(sheet_name)?;
        for (col, (title, key, req)) in columns(spec).enumerate() {
            sheet.write_string_with_format(
                0,
                col as u16,
                *title,
                if *req { &required } else { &header },
            )?;
            sheet.set_column_width(col as u16, 16)?;
            let choices = match *key {
                "share_type" => Some(labels(ShareType::ALL, ShareType::label_zh)),
                "open_type" => Some(labels(OpenType::ALL, OpenType::label_zh)),
                "update_cycle" => Some(labels(UpdateCycle::ALL, UpdateCycle::label_zh)),
                "share_method" => Some(labels(ShareMethod::ALL, ShareMethod::label_zh)),
                "type" => Some(labels(DataType::ALL, DataType::label_zh)),
                "role" => Some(labels(Role::ALL, Role::label_zh)),
                "sensitivity" => Some(labels(Sensitivity::ALL, Sensitivity::label_zh)),
                "required" | "unique" => Some(vec!["是".into(), "否".into()]),
                _ => None,
            };
            if let Some(choices) = choices {
                let list: Vec<&str> = choices.iter().map(String::as_str).collect();
                sheet.add_data_validation(
                    1,
                    col as u16,
                    2000,
                    col as u16,
                    &DataValidation::new().allow_list_strings(&list)?,
                )?;
            }
        }
        sheet.set_freeze_panes(1, 0)?;
    }
    let guide = wb.add_worksheet().set_name(GUIDE_SHEET)?;
    let lines = [
        "政务信息资源目录填报模板 / Catalog workbook".to_string(),
        "1. 在「信息资源」表每行填写一个信息资源；橙色列为必填。资源代码可留空，由平台按分类码/顺序码生成。".into(),
        "2. 在「信息项」表每行填写一个信息项（字段），用「资源名称」关联到所属资源；信息项名称用英文字母、数字和下划线。".into(),
        "3. 有条件共享须填写共享条件和共享依据；不予共享须填写共享依据；有条件开放须填写开放条件。".into(),
        format!("共享类型: {}", ShareType::choices()),
        format!("开放类型: {}", OpenType::choices()),
        format!("更新周期: {}", UpdateCycle::choices()),
        format!("数据类型: {}", DataType::choices()),
        format!("识别类型: {}", Role::choices()),
        format!("敏感级别: {}", Sensitivity::choices()),
        format!("默认脱敏: {}", tongchou_model::MASKS.join(", ")),
        format!("数值型的精度（总位数 1–38）和小数位数：如欠费金额 18 和 2（decimal(18,2)，保留到分）；不填则为 {}。", tongchou_model::DecimalType::DEFAULT),
        "多个关联资源代码、标签或允许值用分号（;）分隔。整个工作簿全部通过校验才登记，任何一行有误则都不登记。".into(),
        "Fill one resource per row on 信息资源 and one field per row on 信息项; the workbook registers whole or not at all.".into(),
    ];
    for (row, line) in lines.iter().enumerate() {
        guide.write_string(row as u32, 0, line)?;
    }
    guide.set_column_width(0, 120)?;
    wb.save_to_buffer()
}

fn split_list(text: &str) -> Vec<Value> {
    text.split([';', '；', ',', '，', '、'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| json!(s))
        .collect()
}

fn problem(at: String, field: Option<&str>, message: impl Into<String>) -> Problem {
    Problem {
        at,
        resource: None,
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// A sheet's rows keyed by JSON key, with their 1-based row numbers.
type SheetRows = Vec<(usize, BTreeMap<&'static str, String>)>;

fn read_sheet(
    xlsx: &mut Xlsx<Cursor<&[u8]>>,
    sheet: &str,
    spec: &[(&'static str, &'static str, bool)],
    problems: &mut Vec<Problem>,
) -> SheetRows {
    match xlsx.merge_cells_by_sheet_name(sheet) {
        Ok(merged) => {
            for m in merged {
                problems.push(problem(
                    format!("{sheet} {}", cell_name(m.start.0, m.start.1)),
                    None,
                    format!(
                        "cells {}:{} are merged; unmerge them and give every row its own values",
                        cell_name(m.start.0, m.start.1),
                        cell_name(m.end.0, m.end.1)
                    ),
                ));
            }
        }
        Err(e) => problems.push(problem(
            sheet.to_string(),
            None,
            format!("cannot be read: {e}"),
        )),
    }
    let rows =
        match sheet::rows(xlsx, sheet, &LIMITS).and_then(|r| r.collect::<Result<Vec<_>, _>>()) {
            Ok(rows) => rows,
            Err(e) => {
                problems.push(problem(
                    sheet.to_string(),
                    None,
                    format!("cannot be read: {e}"),
                ));
                return Vec::new();
            }
        };
    let Some((_, header)) = rows.first() else {
        problems.push(problem(
            sheet.to_string(),
            None,
            "is empty: it needs its header row",
        ));
        return Vec::new();
    };
    let mut positions: Vec<(usize, &'static str)> = Vec::new();
    for (title, key, required) in columns(spec) {
        match header.iter().position(|h| h.trim() == *title) {
            Some(col) if !key.is_empty() => positions.push((col, key)),
            Some(_) => {}
            None if *required => problems.push(problem(
                sheet.to_string(),
                Some(title),
                "this required column is missing from the header row; download a fresh template",
            )),
            None => {}
        }
    }
    for (col, h) in header.iter().enumerate() {
        if !h.is_empty() && !columns(spec).any(|(title, _, _)| h.trim() == *title) {
            problems.push(problem(
                sheet.to_string(),
                Some(h),
                format!(
                    "unknown column (column {}); the template's columns are {}",
                    col + 1,
                    columns(spec).map(|c| c.0).collect::<Vec<_>>().join("、")
                ),
            ));
        }
    }
    rows.iter()
        .skip(1)
        .map(|(number, r)| {
            let values = positions
                .iter()
                .filter_map(|(col, key)| {
                    r.get(*col)
                        .map(|v| (*key, v.trim().to_string()))
                        .filter(|(_, v)| !v.is_empty())
                })
                .collect();
            (*number as usize, values)
        })
        .collect()
}

fn yes_no(text: &str) -> Value {
    match crate::values::parse_bool(text) {
        Some(b) => json!(b),
        None => json!(text),
    }
}

fn resource_value(values: &BTreeMap<&'static str, String>) -> Value {
    let mut obj = Map::new();
    let mut classification = Map::new();
    for (key, value) in values {
        match *key {
            "class" | "item" | "catalog" | "subcatalog" => {
                classification.insert(
                    key.to_string(),
                    value.parse::<u64>().map_or(json!(value), |n| json!(n)),
                );
            }
            "related" | "tags" | "key" => {
                obj.insert(key.to_string(), Value::Array(split_list(value)));
            }
            _ => {
                obj.insert(key.to_string(), json!(value));
            }
        }
    }
    if !classification.is_empty() {
        obj.insert("classification".into(), Value::Object(classification));
    }
    obj.insert("fields".into(), json!([]));
    Value::Object(obj)
}

fn field_value(values: &BTreeMap<&'static str, String>) -> Value {
    let mut obj = Map::new();
    for (key, value) in values {
        let v = match *key {
            "resource" => continue,
            "required" | "unique" => yes_no(value),
            "allowed_values" => Value::Array(split_list(value)),
            _ => json!(value),
        };
        obj.insert(key.to_string(), v);
    }
    Value::Object(obj)
}

/// Well-formed resources with their places, and the problems of the rest.
pub type Parsed = (Vec<(String, Resource)>, Vec<Problem>);

/// Reads a filled-in workbook: the resources that are well-formed (each with its place)
/// and the problems of the others; a workbook that is not of the template's shape is
/// refused outright.
pub fn parse(bytes: &[u8]) -> Result<Parsed, Vec<Problem>> {
    let mut xlsx: Xlsx<Cursor<&[u8]>> =
        match sheet::open("catalog.xlsx", Cursor::new(bytes), &LIMITS) {
            Ok(x) => x,
            Err(e @ sheet::SheetError::Unreadable(_)) => {
                return Err(vec![problem(
                    "workbook".into(),
                    None,
                    format!("is not an .xlsx workbook ({e}); save it as Excel Workbook (.xlsx)"),
                )]);
            }
            Err(e) => return Err(vec![problem("workbook".into(), None, e.to_string())]),
        };
    let mut problems = Vec::new();
    let names = xlsx.sheet_names();
    for required in [RESOURCE_SHEET, FIELD_SHEET] {
        if !names.iter().any(|n| n == required) {
            problems.push(problem(
                "workbook".into(),
                None,
                format!(
                    "has no sheet named {required}; use the template's sheets 信息资源 and 信息项"
                ),
            ));
        }
    }
    for extra in names
        .iter()
        .filter(|n| ![RESOURCE_SHEET, FIELD_SHEET, GUIDE_SHEET].contains(&n.as_str()))
    {
        problems.push(problem("workbook".into(), None, format!("has an extra sheet '{extra}'; a catalog workbook holds only 信息资源, 信息项 and 填写说明 — move other data out")));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let resources = read_sheet(&mut xlsx, RESOURCE_SHEET, &RESOURCE_COLUMNS, &mut problems);
    let fields = read_sheet(&mut xlsx, FIELD_SHEET, &FIELD_COLUMNS, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    if resources.is_empty() {
        return Err(vec![problem(
            RESOURCE_SHEET.into(),
            None,
            "has no resource rows",
        )]);
    }
    let mut by_name: BTreeMap<String, (usize, Value, Vec<usize>)> = BTreeMap::new();
    for (row, values) in &resources {
        let value = resource_value(values);
        let name = values.get("name").cloned().unwrap_or_default();
        if let Some((first, _, _)) = by_name.get(&name) {
            problems.push(problem(
                format!("{RESOURCE_SHEET} 第{row}行"),
                Some("资源名称"),
                format!("'{name}' is also on row {first}; each resource needs its own name"),
            ));
            continue;
        }
        by_name.insert(name, (*row, value, Vec::new()));
    }
    for (row, values) in &fields {
        let target = values.get("resource").cloned().unwrap_or_default();
        match by_name.get_mut(&target) {
            Some((_, value, rows)) => {
                value["fields"]
                    .as_array_mut()
                    .expect("fields array")
                    .push(field_value(values));
                rows.push(*row);
            }
            None => problems.push(problem(
                format!("{FIELD_SHEET} 第{row}行"),
                Some("资源名称"),
                format!("'{target}' is not a resource name on the 信息资源 sheet"),
            )),
        }
    }
    let mut ordered: Vec<(usize, Value, Vec<usize>)> = by_name.into_values().collect();
    ordered.sort_by_key(|(row, _, _)| *row);
    let mut out = Vec::new();
    for (row, value, field_rows) in ordered {
        let at = format!("{RESOURCE_SHEET} 第{row}行");
        match validate::resource(&at, &value) {
            Ok(r) => out.push((at, r)),
            Err(found) => problems.extend(found.into_iter().map(|p| relocate(p, &field_rows))),
        }
    }
    Ok((out, problems))
}

/// Points a field's problem at its own row of the 信息项 sheet.
fn relocate(mut p: Problem, field_rows: &[usize]) -> Problem {
    let index = p
        .field
        .as_deref()
        .and_then(|f| f.strip_prefix("信息项 "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(row) = index.and_then(|i| field_rows.get(i - 1)) {
        p.at = format!("{FIELD_SHEET} 第{row}行");
        p.field = p.field.map(|f| {
            f.split_once(' ').map_or(f.clone(), |(_, rest)| {
                rest.split_once(' ')
                    .map_or(f.clone(), |(_, name)| name.to_string())
            })
        });
    }
    p
}

/// A JSON list of text as the workbook writes it: separated by semicolons.
fn join_list(value: &Value) -> String {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default()
}

/// Writes resources into a workbook of the template's shape (for export and round trips).
pub fn export(resources: &[Resource]) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let header = Format::new().set_bold();
    let sheet = wb.add_worksheet().set_name(RESOURCE_SHEET)?;
    for (col, (title, _, _)) in columns(&RESOURCE_COLUMNS).enumerate() {
        sheet.write_string_with_format(0, col as u16, *title, &header)?;
    }
    for (i, r) in resources.iter().enumerate() {
        let row = i as u32 + 1;
        let value = serde_json::to_value(r).expect("resource serialises");
        for (col, (_, key, _)) in columns(&RESOURCE_COLUMNS).enumerate() {
            let text = match *key {
                "class" | "item" | "catalog" | "subcatalog" => value["classification"][key]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                "related" | "tags" | "key" => join_list(&value[key]),
                "" => String::new(),
                _ => value[key].as_str().map(str::to_string).unwrap_or_default(),
            };
            if !text.is_empty() {
                sheet.write_string(row, col as u16, text)?;
            }
        }
    }
    let sheet = wb.add_worksheet().set_name(FIELD_SHEET)?;
    for (col, (title, _, _)) in columns(&FIELD_COLUMNS).enumerate() {
        sheet.write_string_with_format(0, col as u16, *title, &header)?;
    }
    let mut row = 1;
    for r in resources {
        for f in &r.fields {
            let value = serde_json::to_value(f).expect("field serialises");
            for (col, (_, key, _)) in columns(&FIELD_COLUMNS).enumerate() {
                let text = match *key {
                    "resource" => r.name.clone(),
                    "required" | "unique" => {
                        if value[key].as_bool().unwrap_or(false) {
                            "是".into()
                        } else {
                            "否".into()
                        }
                    }
                    "allowed_values" => join_list(&value[key]),
                    "precision" | "scale" => value[key]
                        .as_u64()
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    _ => value[key].as_str().map(str::to_string).unwrap_or_default(),
                };
                if !text.is_empty() {
                    sheet.write_string(row, col as u16, text)?;
                }
            }
            row += 1;
        }
    }
    wb.save_to_buffer()
}
