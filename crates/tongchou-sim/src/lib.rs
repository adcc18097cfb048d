//! Deterministic generator of a simulated Nanhai-like district (DESIGN.md §8).
//!
//! [`generate`] builds a world of people (three generations, with household and marriage
//! links), officials and enterprises; plants every scenario of the seed article in it; and
//! writes what the departments would export — CSV in UTF-8 or GBK, XLSX with title rows,
//! NDJSON, with mistyped identifiers, variant names and three date styles — together with
//! `catalog.json` (the resources in the public JSON form), `manifest.json` (which file
//! holds which resource, how) and `ground_truth.json` (every planted case).
//!
//! The same seed and scale give byte-identical output: all randomness flows from the seed,
//! each export has its own generator derived from the seed and its file name, and nothing
//! depends on thread scheduling, hash order or the clock.

mod datasets;
mod filler;
mod output;
mod scale;
mod schema;
pub mod truth;
mod vocab;
mod world;

use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use tongchou_model::{Classification, Resource, ShareMethod, ShareType, Unit};

pub use datasets::distance_m;
pub use output::{Encoding, ExportReport, Format};
pub use scale::Scale;
pub use vocab::units;

use datasets::{Ctx, Dataset, Kind};
use filler::FillerResource;
use output::{ExportSpec, Row, TableWriter};
use schema::FileMess;
use truth::*;

pub const GROUND_TRUTH_FILE: &str = "ground_truth.json";
pub const CATALOG_FILE: &str = "catalog.json";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0} already exists; choose a new --out directory or remove it first")]
    OutputExists(String),
    #[error("cannot write into {path}: {source}; choose a writable --out directory")]
    NotWritable {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the disk is full while writing {path}; free some space or choose another --out (the partial output was removed)"
    )]
    DiskFull { path: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the workbook {path}: {message}")]
    Xlsx { path: String, message: String },
}

impl SimError {
    /// Turns "no space left" into [`SimError::DiskFull`], whichever layer reported it.
    fn classify(self) -> SimError {
        const ENOSPC: i32 = 28;
        match self {
            SimError::Io { path, source } if source.raw_os_error() == Some(ENOSPC) => {
                SimError::DiskFull { path }
            }
            SimError::Xlsx { path, message } if message.contains("No space left") => {
                SimError::DiskFull { path }
            }
            other => other,
        }
    }
}

pub use tongchou_model::Progress;

/// What a generation produced.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scale: Scale,
    pub seed: u64,
    pub units: usize,
    pub resources: usize,
    pub fields: usize,
    pub records: u64,
    pub files: usize,
    pub bytes: u64,
    pub invalid_rows: usize,
}

/// An export to write: its catalog entry, file and how its rows are made.
struct Job<'a> {
    resource: Resource,
    spec: ExportSpec,
    source: Source<'a>,
}

enum Source<'a> {
    Scenario(Kind),
    Filler(&'a FillerResource),
}

/// Generates the district into `out`, which must not exist. Everything is written to a
/// temporary sibling first and renamed into place only when complete.
pub fn generate(
    scale: Scale,
    seed: u64,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Summary, SimError> {
    if out.exists() {
        return Err(SimError::OutputExists(out.display().to_string()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "district".into());
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(|source| SimError::NotWritable {
        path: parent.display().to_string(),
        source,
    })?;
    let result = generate_into(scale, seed, &staging, progress).and_then(|summary| {
        sync_dir(&staging)?;
        std::fs::rename(&staging, out).map_err(|source| SimError::Io {
            path: out.display().to_string(),
            source,
        })?;
        sync_dir(&parent)?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result.map_err(SimError::classify)
}

fn sync_dir(dir: &Path) -> Result<(), SimError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| SimError::Io {
            path: dir.display().to_string(),
            source,
        })
}

fn generate_into(
    scale: Scale,
    seed: u64,
    root: &Path,
    progress: &dyn Progress,
) -> Result<Summary, SimError> {
    let sizes = scale.sizes();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let world = world::build(&mut rng, &sizes);
    let units = vocab::units();
    let scenario = datasets::scenario_datasets();
    let filler = plan_filler(scale, seed, &scenario);
    let jobs = jobs(&units, &scenario, &filler, seed);

    let estimated: u64 =
        filler.iter().map(|f| f.rows).sum::<u64>() + estimate_scenario_rows(&world, sizes.months);
    progress.start(estimated);
    let results: Vec<(ExportReport, FileMess)> = jobs
        .par_iter()
        .map(|job| write_job(job, &world, seed, root, sizes.months, progress))
        .collect::<Result<_, _>>()?;

    let mut truth = GroundTruth {
        generator: concat!("tongchou-sim ", env!("CARGO_PKG_VERSION")),
        seed,
        scale: scale.as_str(),
        export_day: world::export_day().to_string(),
        ..Default::default()
    };
    let file_of = |kind: Kind| -> (&Job<'_>, &ExportReport) {
        let i = jobs
            .iter()
            .position(|j| matches!(j.source, Source::Scenario(k) if k == kind))
            .expect("scenario job");
        (&jobs[i], &results[i].0)
    };
    scenarios(&world, seed, &sizes, &units, &mut truth, &file_of);
    for (report, mess) in &results {
        truth.invalid_rows.extend(mess.invalid.iter().cloned());
        truth.duplicates.extend(mess.duplicates.iter().cloned());
        truth.inventory.records += report.rows;
    }
    truth.inventory.units = units.len();
    truth.inventory.resources = jobs.len();
    truth.inventory.fields = jobs.iter().map(|j| j.resource.fields.len()).sum();
    truth.inventory.invalid_rows = truth.invalid_rows.len();

    let resources: Vec<&Resource> = jobs.iter().map(|j| &j.resource).collect();
    write_json(
        root,
        CATALOG_FILE,
        &serde_json::json!({ "units": units, "resources": resources }),
    )?;
    let exports: Vec<&ExportReport> = results.iter().map(|(r, _)| r).collect();
    write_json(
        root,
        MANIFEST_FILE,
        &serde_json::json!({ "scale": scale, "seed": seed, "exports": exports }),
    )?;
    write_json(root, GROUND_TRUTH_FILE, &truth)?;
    let bytes = dir_size(root)?;
    Ok(Summary {
        scale,
        seed,
        units: truth.inventory.units,
        resources: truth.inventory.resources,
        fields: truth.inventory.fields,
        records: truth.inventory.records,
        files: results.len(),
        bytes,
        invalid_rows: truth.inventory.invalid_rows,
    })
}

/// The inventory's resources beyond the scenario datasets. Planned from their own
/// generator, so the catalog can be known without building the world.
fn plan_filler(scale: Scale, seed: u64, scenario: &[Dataset]) -> Vec<FillerResource> {
    let sizes = scale.sizes();
    let mut rng = ChaCha8Rng::seed_from_u64(file_seed(seed, "inventory"));
    let scenario_fields: usize = scenario.iter().map(|d| d.fields.len()).sum();
    let mut taken = vec![0usize; vocab::UNITS.len()];
    for d in scenario {
        taken[vocab::unit_index(d.unit)] += 1;
    }
    filler::plan(
        &mut rng,
        sizes.resources - scenario.len(),
        sizes.fields.map(|total| total - scenario_fields),
        sizes.filler_rows,
        &taken,
        scale == Scale::Nanhai,
    )
}

/// The catalog a generation will produce, without generating: (units, resources, fields).
pub fn inventory(scale: Scale, seed: u64) -> (usize, usize, usize) {
    let (units, resources) = catalog(scale, seed);
    (
        units.len(),
        resources.len(),
        resources.iter().map(|r| r.fields.len()).sum(),
    )
}

/// The units and resources a generation will register (its `catalog.json`), without
/// generating any data.
pub fn catalog(scale: Scale, seed: u64) -> (Vec<Unit>, Vec<Resource>) {
    let units = vocab::units();
    let scenario = datasets::scenario_datasets();
    let filler = plan_filler(scale, seed, &scenario);
    let resources = jobs(&units, &scenario, &filler, seed)
        .into_iter()
        .map(|j| j.resource)
        .collect();
    (units, resources)
}

fn estimate_scenario_rows(world: &world::World, months: u32) -> u64 {
    let persons = world.persons.len() as u64;
    let enterprises = world.enterprises.len() as u64;
    persons * 3 / 2 + enterprises * (u64::from(months) * 2 + 12) + world.vendor_background as u64
}

const PUBLISHED: [&str; 4] = ["2015-03-31", "2015-04-30", "2015-05-29", "2015-06-05"];

fn jobs<'a>(
    units: &[Unit],
    scenario: &[Dataset],
    filler: &'a [FillerResource],
    seed: u64,
) -> Vec<Job<'a>> {
    let rng = &mut ChaCha8Rng::seed_from_u64(file_seed(seed, "catalog"));
    let mut sequence = 0;
    let mut next = |class: u8, item: u8, catalog: u16, subcatalog: u16| {
        sequence += 1;
        let c = Classification {
            class,
            item,
            catalog,
            subcatalog,
        };
        (c.resource_code(sequence), c)
    };
    let mut jobs = Vec::with_capacity(scenario.len() + filler.len());
    for (i, d) in scenario.iter().enumerate() {
        let u = vocab::unit_index(d.unit);
        let (code, class) = match d.base_item {
            Some(item) => next(1, item, 1, 1),
            None => next(3, (u + 1) as u8, 1, (i + 1) as u16),
        };
        let resource = resource(
            &units[u],
            code,
            class,
            d.name,
            d.summary.to_string(),
            d.share,
            d.open,
            d.cycle,
            d.tags.iter().map(|t| t.to_string()).collect(),
            d.key,
            d.fields.clone(),
            &d.spec,
            rng,
        );
        jobs.push(Job {
            resource,
            spec: d.spec.clone(),
            source: Source::Scenario(d.kind),
        });
    }
    link_related(&mut jobs, Kind::PowerAccounts, Kind::PowerUsage);
    link_related(&mut jobs, Kind::SocialInsurance, Kind::Arrears);
    link_related(&mut jobs, Kind::EnterpriseRegistry, Kind::Licences);
    for f in filler {
        let (code, class) = next(
            3,
            (f.unit + 1) as u8,
            (f.object + 2) as u16,
            (f.pattern + 1) as u16,
        );
        let tags = vec![
            filler::objects(f.unit)[f.object].to_string(),
            vocab::UNITS[f.unit]
                .name
                .trim_start_matches("佛山市南海区")
                .to_string(),
        ];
        let resource = resource(
            &units[f.unit],
            code,
            class,
            &f.name,
            f.summary.clone(),
            f.share,
            f.open,
            f.cycle,
            tags,
            &["record_no"],
            f.fields.clone(),
            &f.spec,
            rng,
        );
        jobs.push(Job {
            resource,
            spec: f.spec.clone(),
            source: Source::Filler(f),
        });
    }
    jobs
}

fn link_related(jobs: &mut [Job<'_>], a: Kind, b: Kind) {
    let find = |jobs: &[Job<'_>], k: Kind| {
        jobs.iter()
            .position(|j| matches!(j.source, Source::Scenario(x) if x == k))
            .expect("scenario")
    };
    let (ia, ib) = (find(jobs, a), find(jobs, b));
    let (ca, cb) = (
        jobs[ia].resource.code.clone().expect("code"),
        jobs[ib].resource.code.clone().expect("code"),
    );
    jobs[ia].resource.related.push(cb);
    jobs[ib].resource.related.push(ca);
}

#[allow(clippy::too_many_arguments)]
fn resource(
    unit: &Unit,
    code: String,
    classification: Classification,
    name: &str,
    summary: String,
    share_type: ShareType,
    open_type: tongchou_model::OpenType,
    update_cycle: tongchou_model::UpdateCycle,
    tags: Vec<String>,
    key: &[&str],
    fields: Vec<tongchou_model::Field>,
    spec: &ExportSpec,
    rng: &mut ChaCha8Rng,
) -> Resource {
    let restricted = share_type != ShareType::Unconditional;
    Resource {
        code: Some(code),
        unit: unit.code.clone(),
        name: name.to_string(),
        summary,
        classification: Some(classification),
        format: Some(match spec.format {
            Format::Csv => "电子表格/CSV".to_string(),
            Format::Xlsx => "电子表格/XLSX".to_string(),
            Format::Ndjson => "接口数据/JSON".to_string(),
        }),
        share_type,
        share_condition: (share_type == ShareType::Conditional)
            .then(|| "仅用于依法履职的比对核查，须经提供单位审核同意".to_string()),
        legal_basis: restricted.then(|| "《广东省政务数据资源共享管理办法（试行）》".to_string()),
        share_method: Some(
            *[ShareMethod::Api, ShareMethod::TableSync, ShareMethod::File]
                .choose(rng)
                .expect("method"),
        ),
        open_type,
        open_condition: (open_type == tongchou_model::OpenType::Conditional)
            .then(|| "经申请审核后向特定对象开放".to_string()),
        update_cycle,
        published: Some(PUBLISHED[rng.random_range(0..PUBLISHED.len())].to_string()),
        related: Vec::new(),
        tags,
        key: key.iter().map(|k| k.to_string()).collect(),
        fields,
    }
}

/// A seed for one export, from the run's seed and the export's file name (FNV-1a), so that
/// each file is the same whatever order the files are written in.
fn file_seed(seed: u64, file: &str) -> u64 {
    file.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn write_job(
    job: &Job<'_>,
    world: &world::World,
    seed: u64,
    root: &Path,
    months: u32,
    progress: &dyn Progress,
) -> Result<(ExportReport, FileMess), SimError> {
    let exports = root.join("exports");
    let writer = TableWriter::create(&exports, &job.spec, &job.resource)?;
    let mut ctx = Ctx {
        world,
        rng: ChaCha8Rng::seed_from_u64(file_seed(seed, &job.spec.file)),
        writer,
        mess: FileMess::default(),
        row: Row::default(),
        style: job.spec.date_style,
        file: format!("exports/{}", job.spec.file),
        progress,
    };
    match job.source {
        Source::Scenario(kind) => datasets::write(kind, &mut ctx, months)?,
        Source::Filler(f) => f.write(&mut ctx)?,
    }
    let report = ctx.writer.finish()?;
    progress.advance(report.rows % datasets::PROGRESS_STEP);
    let mut report = report;
    report.file = format!("exports/{}", report.file);
    Ok((report, ctx.mess))
}

fn write_json<T: Serialize>(root: &Path, name: &str, value: &T) -> Result<(), SimError> {
    let path = root.join(name);
    let io = |source| SimError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(&path).map_err(io)?;
    let mut writer = std::io::BufWriter::new(&file);
    serde_json::to_writer_pretty(&mut writer, value).map_err(|e| io(e.into()))?;
    std::io::Write::write_all(&mut writer, b"\n").map_err(io)?;
    std::io::Write::flush(&mut writer).map_err(io)?;
    drop(writer);
    file.sync_all().map_err(io)
}

fn dir_size(dir: &Path) -> Result<u64, SimError> {
    let io = |source| SimError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Fills the scenario part of the ground truth from the world the exports were made of.
fn scenarios<'j>(
    world: &world::World,
    seed: u64,
    sizes: &scale::Sizes,
    units: &[Unit],
    truth: &mut GroundTruth,
    file_of: &dyn Fn(Kind) -> (&'j Job<'j>, &'j ExportReport),
) {
    let s = &mut truth.scenarios;
    for (i, &(e, _)) in world.funding_applicants.iter().enumerate() {
        let ent = &world.enterprises[e];
        if let Some((_, months)) = ent.arrears {
            s.arrears_applicants.push(ArrearsApplicant {
                application_no: datasets::application_no(i + 1),
                credit_code: ent.code.clone(),
                enterprise_name: ent.name.clone(),
                arrears_months: months,
            });
        }
    }
    for (k, surge) in world.surges.iter().enumerate() {
        let official = &world.officials[surge.official];
        let person = world.person(official.person);
        let relative = world.person(surge.relative);
        s.relative_property_surges.push(PropertySurgeCase {
            official_id: person.id.clone(),
            official_name: person.name.clone(),
            official_unit: units[official.unit].name.clone(),
            wife_id: world.person(surge.wife).id.clone(),
            relative_id: relative.id.clone(),
            relative_name: relative.name.clone(),
            relation: "wife's brother (配偶的兄弟)",
            certificates: surge
                .dates
                .iter()
                .enumerate()
                .map(|(j, d)| datasets::surge_certificate(k, j, d.year()))
                .collect(),
            first_registered: surge.dates[0].to_string(),
            last_registered: surge.dates[surge.dates.len() - 1].to_string(),
        });
    }
    for (e, ent) in world.enterprises.iter().enumerate() {
        if ent.tax_declared_share < 1.0 {
            s.tax_electricity_outliers.push(TaxOutlier {
                credit_code: ent.code.clone(),
                enterprise_name: ent.name.clone(),
                account_no: datasets::account_no(e),
                declared_share: (ent.tax_declared_share * 1000.0).round() / 1000.0,
            });
        }
        if ent.status == "存续" {
            truth.electricity_accounts.push(AccountLink {
                account_no: datasets::account_no(e),
                credit_code: ent.code.clone(),
            });
        }
    }
    for h in &world.hotspots {
        s.vendor_hotspots.push(VendorHotspot {
            latitude: h.lat,
            longitude: h.lon,
            radius_m: datasets::HOTSPOT_RADIUS_M,
            sightings: h.sightings,
            town: vocab::TOWNS[h.town as usize],
            near: h.community,
        });
    }
    let mut fakes: Vec<&world::FakeLicence> = world.fake_licences.iter().collect();
    fakes.sort_by_key(|f| f.report);
    for f in fakes {
        s.fake_licences.push(FakeLicenceCase {
            report_no: datasets::report_no(f.report + 1),
            licence_no_typed: f.typed.clone(),
            kind: f.kind,
            true_code: f.true_code.clone(),
        });
    }
    for m in &world.macau {
        let official = &world.officials[m.official];
        let person = world.person(official.person);
        s.frequent_macau_travellers.push(MacauCase {
            person_id: person.id.clone(),
            name: person.name.clone(),
            unit: units[official.unit].name.clone(),
            year: 2014,
            trips: m.trips,
        });
    }
    family_pairs(world, seed, sizes.planted.parent_child_pairs, s);

    let sources = [Kind::EnterpriseRegistry, Kind::OrgCodes, Kind::Employers].map(file_of);
    for c in &world.conflicts {
        let ent = &world.enterprises[c.enterprise];
        truth.conflicts.push(ConflictCase {
            entity_type: "enterprise",
            entity_id: ent.code.clone(),
            attribute: c.attribute.as_str(),
            true_value: datasets::enterprise_value(world, c.enterprise, c.attribute, usize::MAX),
            values: sources
                .iter()
                .enumerate()
                .map(|(i, (job, report))| SourceValue {
                    resource_code: job.resource.code.clone().unwrap_or_default(),
                    file: report.file.clone(),
                    value: datasets::enterprise_value(world, c.enterprise, c.attribute, i),
                })
                .collect(),
        });
    }
}

/// Parent–child pairs for "my mother is my mother", and pairs that only look related.
fn family_pairs(world: &world::World, seed: u64, count: usize, s: &mut Scenarios) {
    let mut rng = ChaCha8Rng::seed_from_u64(file_seed(seed, "family-pairs"));
    let with_parents: Vec<usize> = (0..world.persons.len())
        .filter(|&i| world.persons[i].mother.is_some())
        .collect();
    for k in 0..count {
        let child = &world.persons[*with_parents.choose(&mut rng).expect("children")];
        let (parent, relation) = if k % 2 == 0 {
            (child.mother, "mother")
        } else {
            (child.father, "father")
        };
        let parent = world.person(parent.expect("both parents recorded"));
        s.parent_child_pairs.push(ParentChildPair {
            parent_id: parent.id.clone(),
            child_id: child.id.clone(),
            relation,
        });
        let other = match k % 3 {
            0 => {
                let siblings = &world.children[child.mother.expect("mother") as usize];
                siblings
                    .iter()
                    .map(|&x| world.person(x))
                    .find(|p| p.id != child.id)
                    .map(|p| (p.id.clone(), "sibling"))
            }
            1 => world
                .person(child.mother.expect("mother"))
                .mother
                .map(|g| (world.person(g).id.clone(), "grandparent")),
            _ => None,
        };
        let (person_a, actual) = other.unwrap_or_else(|| {
            loop {
                let p = &world.persons[rng.random_range(0..world.persons.len())];
                if Some(p.id.as_str()) != child.mother.map(|m| world.person(m).id.as_str())
                    && Some(p.id.as_str()) != child.father.map(|f| world.person(f).id.as_str())
                    && p.id != child.id
                {
                    break (p.id.clone(), "unrelated");
                }
            }
        });
        s.non_parent_pairs.push(NonParentPair {
            person_a,
            person_b: child.id.clone(),
            actual,
        });
    }
}
