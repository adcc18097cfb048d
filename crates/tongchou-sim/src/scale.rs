//! How big a simulated district is.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Tiny,
    Small,
    Nanhai,
}

/// The sizes one scale implies.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub persons: usize,
    pub enterprises: usize,
    /// Months of monthly data (social insurance, electricity), ending June 2015.
    pub months: u32,
    pub resources: usize,
    /// Total fields over all resources; `None` lets the generator choose.
    pub fields: Option<usize>,
    /// Rows spread over the resources that are not scenario datasets.
    pub filler_rows: u64,
    pub vendor_background: usize,
    pub planted: Planted,
}

/// How many cases of each seed scenario are planted.
#[derive(Debug, Clone, Copy)]
pub struct Planted {
    pub arrears_applicants: usize,
    pub property_surges: usize,
    pub tax_outliers: usize,
    pub vendor_hotspots: usize,
    pub fake_licences: usize,
    pub macau_travellers: usize,
    pub parent_child_pairs: usize,
    pub conflicts: usize,
}

impl Scale {
    pub fn parse(text: &str) -> Option<Scale> {
        match text {
            "tiny" => Some(Scale::Tiny),
            "small" => Some(Scale::Small),
            "nanhai" => Some(Scale::Nanhai),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Small => "small",
            Scale::Nanhai => "nanhai",
        }
    }

    pub fn sizes(self) -> Sizes {
        match self {
            Scale::Tiny => Sizes {
                persons: 3_000,
                enterprises: 300,
                months: 12,
                resources: 100,
                fields: None,
                filler_rows: 20_000,
                vendor_background: 300,
                planted: Planted {
                    arrears_applicants: 5,
                    property_surges: 2,
                    tax_outliers: 4,
                    vendor_hotspots: 3,
                    fake_licences: 6,
                    macau_travellers: 2,
                    parent_child_pairs: 50,
                    conflicts: 10,
                },
            },
            Scale::Small => Sizes {
                persons: 60_000,
                enterprises: 5_000,
                months: 24,
                resources: 300,
                fields: None,
                filler_rows: 1_200_000,
                vendor_background: 4_000,
                planted: Planted {
                    arrears_applicants: 20,
                    property_surges: 5,
                    tax_outliers: 15,
                    vendor_hotspots: 6,
                    fake_licences: 30,
                    macau_travellers: 5,
                    parent_child_pairs: 200,
                    conflicts: 50,
                },
            },
            Scale::Nanhai => Sizes {
                persons: 1_200_000,
                enterprises: 120_000,
                months: 24,
                resources: 1_083,
                fields: Some(12_706),
                filler_rows: 29_500_000,
                vendor_background: 60_000,
                planted: Planted {
                    arrears_applicants: 40,
                    property_surges: 12,
                    tax_outliers: 60,
                    vendor_hotspots: 12,
                    fake_licences: 150,
                    macau_travellers: 15,
                    parent_child_pairs: 1_000,
                    conflicts: 300,
                },
            },
        }
    }
}
