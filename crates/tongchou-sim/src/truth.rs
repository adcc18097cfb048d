//! The ground truth: every planted case, so that detection can be scored, not eyeballed.

use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct GroundTruth {
    pub generator: &'static str,
    pub seed: u64,
    pub scale: &'static str,
    pub export_day: String,
    pub inventory: Inventory,
    pub scenarios: Scenarios,
    pub conflicts: Vec<ConflictCase>,
    pub duplicates: Vec<DuplicateRecord>,
    pub electricity_accounts: Vec<AccountLink>,
    pub invalid_rows: Vec<InvalidRow>,
}

#[derive(Debug, Default, Serialize)]
pub struct Inventory {
    pub units: usize,
    pub resources: usize,
    pub fields: usize,
    pub records: u64,
    pub invalid_rows: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Scenarios {
    /// 1. Science funding applicants that owe social insurance.
    pub arrears_applicants: Vec<ArrearsApplicant>,
    /// 2. Officials whose wife's brother suddenly acquired properties.
    pub relative_property_surges: Vec<PropertySurgeCase>,
    /// 3. Enterprises whose declared tax is far out of line with their electricity use.
    pub tax_electricity_outliers: Vec<TaxOutlier>,
    /// 4. Street-vendor hotspots.
    pub vendor_hotspots: Vec<VendorHotspot>,
    /// 5. Inspection reports with a fake or mistyped licence number.
    pub fake_licences: Vec<FakeLicenceCase>,
    /// 6. Officials with at least 40 trips to Macau in one year.
    pub frequent_macau_travellers: Vec<MacauCase>,
    /// 7. True parent–child pairs, and pairs that are not parent and child.
    pub parent_child_pairs: Vec<ParentChildPair>,
    pub non_parent_pairs: Vec<NonParentPair>,
}

#[derive(Debug, Serialize)]
pub struct ArrearsApplicant {
    pub application_no: String,
    pub credit_code: String,
    pub enterprise_name: String,
    pub arrears_months: u32,
}

#[derive(Debug, Serialize)]
pub struct PropertySurgeCase {
    pub official_id: String,
    pub official_name: String,
    pub official_unit: String,
    pub wife_id: String,
    pub relative_id: String,
    pub relative_name: String,
    pub relation: &'static str,
    pub certificates: Vec<String>,
    pub first_registered: String,
    pub last_registered: String,
}

#[derive(Debug, Serialize)]
pub struct TaxOutlier {
    pub credit_code: String,
    pub enterprise_name: String,
    pub account_no: String,
    pub declared_share: f64,
}

#[derive(Debug, Serialize)]
pub struct VendorHotspot {
    pub latitude: f64,
    pub longitude: f64,
    pub radius_m: f64,
    pub sightings: usize,
    pub town: &'static str,
    pub near: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FakeLicenceCase {
    pub report_no: String,
    pub licence_no_typed: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub true_code: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MacauCase {
    pub person_id: String,
    pub name: String,
    pub unit: String,
    pub year: i16,
    pub trips: u32,
}

#[derive(Debug, Serialize)]
pub struct ParentChildPair {
    pub parent_id: String,
    pub child_id: String,
    pub relation: &'static str,
}

#[derive(Debug, Serialize)]
pub struct NonParentPair {
    pub person_a: String,
    pub person_b: String,
    pub actual: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ConflictCase {
    pub entity_type: &'static str,
    pub entity_id: String,
    pub attribute: &'static str,
    pub true_value: String,
    pub values: Vec<SourceValue>,
}

#[derive(Debug, Serialize)]
pub struct SourceValue {
    pub resource_code: String,
    pub file: String,
    pub value: String,
}

/// A record that names an entity in a variant form (or without its identifier).
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateRecord {
    pub file: String,
    pub line: u64,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub variant: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountLink {
    pub account_no: String,
    pub credit_code: String,
}

/// A row a validating load must quarantine: its identifier fails its check.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidRow {
    pub file: String,
    pub line: u64,
    pub field: String,
    pub value: String,
    pub reason: String,
}
