//! Chinese and English search over the catalog: tantivy with the jieba tokenizer, with
//! field boosts (name before tags before field labels before abstract) and a small
//! dictionary of the abbreviations officials type (社保 for 社会保险, 欠费 for 欠缴, …).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{
    Field as IndexField, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value,
};
use tantivy::tokenizer::{LowerCaser, TextAnalyzer, Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term, doc};
use tongchou_model::{OpenType, Resource, ShareType, UpdateCycle};

const TOKENIZER: &str = "jieba_lower";
const BIGRAMS: &str = "bigrams";

/// Words officials use interchangeably; each query word also matches its partners.
const SYNONYMS: &[&[&str]] = &[
    &["社保", "社会保险"],
    &["医保", "医疗保险", "医疗保障"],
    &["欠费", "欠缴", "拖欠"],
    &["公积金", "住房公积金"],
    &["房产", "不动产", "房屋"],
    &["户口", "户籍"],
    &["身份证", "身份号码", "公民身份号码"],
    &["执照", "营业执照"],
    &["工商", "市场监管", "企业登记"],
    &["纳税", "税务", "税收"],
    &["用电", "电力", "电量"],
    &["出入境", "出境", "入境"],
    &["低保", "最低生活保障"],
    &["结婚", "婚姻"],
    &["小贩", "摊贩"],
    &["法人", "企业"],
    &["处罚", "行政处罚"],
];

#[derive(Debug, thiserror::Error)]
#[error("catalog search index: {0}")]
pub struct IndexError(String);

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError(e.to_string())
    }
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub unit: Option<String>,
    pub share_type: Option<ShareType>,
    pub open_type: Option<OpenType>,
    pub update_cycle: Option<UpdateCycle>,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Hit {
    pub code: String,
    pub name: String,
    pub unit: String,
    pub unit_name: String,
    #[serde(rename = "abstract")]
    pub summary: String,
    pub share_type: String,
    pub open_type: String,
    pub update_cycle: String,
    pub score: f32,
}

/// A searchable text: its jieba-cut field (for ranking) and its bigram field (for matching).
#[derive(Clone, Copy)]
struct Text {
    words: IndexField,
    grams: IndexField,
    boost: f32,
}

struct Fields {
    code: IndexField,
    name: IndexField,
    summary: IndexField,
    unit_name: IndexField,
    texts: [Text; 5],
    unit: IndexField,
    share_type: IndexField,
    open_type: IndexField,
    update_cycle: IndexField,
}

pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    path: PathBuf,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let grams = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(BIGRAMS)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let stored = |name: &str, b: &mut tantivy::schema::SchemaBuilder| {
        b.add_text_field(name, STRING | STORED)
    };
    let code = stored("code", &mut b);
    let name = stored("name", &mut b);
    let summary = stored("abstract", &mut b);
    let unit_name = stored("unit_name_stored", &mut b);
    let mut pair = |label: &str, boost: f32| Text {
        words: b.add_text_field(label, text.clone()),
        grams: b.add_text_field(&format!("{label}_grams"), grams.clone()),
        boost,
    };
    let texts = [
        pair("name_text", 4.0),
        pair("tags", 3.0),
        pair("columns", 1.5),
        pair("abstract_text", 1.0),
        pair("unit_text", 1.0),
    ];
    let fields = Fields {
        code,
        name,
        summary,
        unit_name,
        texts,
        unit: b.add_text_field("unit", STRING | STORED),
        share_type: b.add_text_field("share_type", STRING | STORED),
        open_type: b.add_text_field("open_type", STRING | STORED),
        update_cycle: b.add_text_field("update_cycle", STRING | STORED),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(tantivy_jieba::JiebaTokenizer::new())
        .filter(LowerCaser)
        .build()
}

/// A resource with its unit's name, as indexed.
pub struct Indexed<'a> {
    pub resource: &'a Resource,
    pub code: &'a str,
    pub unit_name: &'a str,
    pub unit_name_en: &'a str,
}

impl SearchIndex {
    /// Opens the index in `path`, creating an empty one if there is none.
    pub fn open(path: &Path) -> Result<SearchIndex, IndexError> {
        std::fs::create_dir_all(path)
            .map_err(|e| IndexError(format!("cannot create {}: {e}", path.display())))?;
        let (schema, fields) = schema();
        let dir =
            tantivy::directory::MmapDirectory::open(path).map_err(|e| IndexError(e.to_string()))?;
        let index = Index::open_or_create(dir, schema)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        index
            .tokenizers()
            .register(BIGRAMS, TextAnalyzer::builder(BigramTokenizer).build());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            fields,
            path: path.to_path_buf(),
        })
    }

    fn generation_file(&self) -> PathBuf {
        self.path.join("generation")
    }

    /// The catalog generation this index reflects, if it recorded one.
    pub fn generation(&self) -> Option<i64> {
        std::fs::read_to_string(self.generation_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Adds or replaces resources (and removes `removed` codes), then records `generation`.
    pub fn update(
        &mut self,
        items: &[Indexed<'_>],
        replace_all: bool,
        generation: i64,
    ) -> Result<(), IndexError> {
        let mut writer: tantivy::IndexWriter<TantivyDocument> = self.index.writer(50_000_000)?;
        if replace_all {
            writer.delete_all_documents()?;
        }
        let f = &self.fields;
        for item in items {
            let r = item.resource;
            writer.delete_term(Term::from_field_text(f.code, item.code));
            let columns: String = r
                .fields
                .iter()
                .map(|x| {
                    format!(
                        "{} {} {} {}",
                        x.label,
                        x.name.replace('_', " "),
                        x.name,
                        x.description.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            let mut d = doc!(
                f.code => item.code,
                f.name => r.name.as_str(),
                f.summary => r.summary.as_str(),
                f.unit_name => item.unit_name,
                f.unit => r.unit.as_str(),
                f.share_type => r.share_type.as_str(),
                f.open_type => r.open_type.as_str(),
                f.update_cycle => r.update_cycle.as_str(),
            );
            let values = [
                r.name.clone(),
                r.tags.join(" "),
                columns,
                r.summary.clone(),
                format!("{} {}", item.unit_name, item.unit_name_en),
            ];
            for (t, value) in f.texts.iter().zip(values) {
                d.add_text(t.words, &value);
                d.add_text(t.grams, &value);
            }
            writer.add_document(d)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        std::fs::write(self.generation_file(), generation.to_string())
            .map_err(|e| IndexError(e.to_string()))?;
        self.reader.reload()?;
        Ok(())
    }

    /// A query word (or one of its synonyms) must occur as a substring of some text —
    /// a phrase of its character bigrams; whole-word jieba matches rank higher.
    fn word_query(&self, word: &str) -> Option<Box<dyn Query>> {
        let word = word.to_lowercase();
        let mut variants: Vec<String> = vec![word.clone()];
        for group in SYNONYMS {
            if group.contains(&word.as_str()) {
                variants.extend(group.iter().filter(|w| **w != word).map(|w| w.to_string()));
            }
        }
        let mut must_one: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut bonus: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for variant in &variants {
            let grams = bigrams(variant);
            for t in &self.fields.texts {
                let matcher: Box<dyn Query> = match grams.len() {
                    0 => Box::new(TermQuery::new(
                        Term::from_field_text(t.words, variant),
                        IndexRecordOption::WithFreqs,
                    )),
                    1 => Box::new(TermQuery::new(
                        Term::from_field_text(t.grams, &grams[0]),
                        IndexRecordOption::WithFreqs,
                    )),
                    _ => Box::new(PhraseQuery::new(
                        grams
                            .iter()
                            .map(|g| Term::from_field_text(t.grams, g))
                            .collect(),
                    )),
                };
                must_one.push((Occur::Should, Box::new(BoostQuery::new(matcher, t.boost))));
                for token in tokens(variant) {
                    let q = TermQuery::new(
                        Term::from_field_text(t.words, &token),
                        IndexRecordOption::WithFreqs,
                    );
                    bonus.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(q), t.boost)),
                    ));
                }
            }
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(must_one)))];
        clauses.extend(bonus);
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    pub fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>, IndexError> {
        let f = &self.fields;
        // Words are runs of letters and digits: "credit_code" is two words.
        let words: Vec<&str> = q
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut filters: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut filter = |field: IndexField, value: &str| {
            filters.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(field, value),
                    IndexRecordOption::Basic,
                )),
            ));
        };
        if let Some(u) = &q.unit {
            filter(f.unit, u);
        }
        if let Some(s) = q.share_type {
            filter(f.share_type, s.as_str());
        }
        if let Some(o) = q.open_type {
            filter(f.open_type, o.as_str());
        }
        if let Some(c) = q.update_cycle {
            filter(f.update_cycle, c.as_str());
        }
        let word_queries: Vec<Box<dyn Query>> =
            words.iter().filter_map(|w| self.word_query(w)).collect();
        if !words.is_empty() && word_queries.is_empty() {
            return Ok(Vec::new());
        }
        let limit = if q.limit == 0 { 20 } else { q.limit };
        // Every word must match; if that finds nothing, any word may.
        for occur in [Occur::Must, Occur::Should] {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> =
                filters.iter().map(|(o, q)| (*o, q.box_clone())).collect();
            clauses.extend(word_queries.iter().map(|q| (occur, q.box_clone())));
            if clauses.is_empty() {
                clauses.push((Occur::Must, Box::new(tantivy::query::AllQuery)));
            }
            let hits = self.run(&BooleanQuery::new(clauses), limit)?;
            if !hits.is_empty() || occur == Occur::Should || word_queries.len() < 2 {
                return Ok(hits);
            }
        }
        Ok(Vec::new())
    }

    fn run(&self, query: &dyn Query, limit: usize) -> Result<Vec<Hit>, IndexError> {
        let searcher = self.reader.searcher();
        let top = searcher.search(query, &TopDocs::with_limit(limit).order_by_score())?;
        let f = &self.fields;
        top.into_iter()
            .map(|(score, address)| {
                let d: TantivyDocument = searcher.doc(address)?;
                let get = |field| {
                    d.get_first(field)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                Ok(Hit {
                    code: get(f.code),
                    name: get(f.name),
                    unit: get(f.unit),
                    unit_name: get(f.unit_name),
                    summary: get(f.summary),
                    share_type: get(f.share_type),
                    open_type: get(f.open_type),
                    update_cycle: get(f.update_cycle),
                    score,
                })
            })
            .collect()
    }

    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index terms of a query word: jieba's cut in search mode, lower-cased, without
/// single characters when longer pieces exist (they match far too much).
fn tokens(word: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(word);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token().text.trim().to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    let longest = out.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    if longest > 1 {
        out.retain(|t| t.chars().count() > 1 || t.is_ascii());
    }
    // Search mode also yields the sub-words of a long word; keep only pieces not covered
    // by a longer piece, so "社会保险" is one term, not also 社会 and 保险.
    let all = out.clone();
    out.retain(|t| !all.iter().any(|o| o != t && o.contains(t.as_str())));
    out
}

/// Overlapping character pairs of each run of letters, lower-cased, with consecutive
/// positions so a phrase of them is a substring; runs are kept apart by a position gap.
#[derive(Clone)]
struct BigramTokenizer;

struct BigramStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for BigramTokenizer {
    type TokenStream<'a> = BigramStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> BigramStream {
        let mut tokens = Vec::new();
        let mut position = 0;
        for run in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|r| !r.is_empty())
        {
            let chars: Vec<(usize, char)> = run.char_indices().collect();
            let base = run.as_ptr() as usize - text.as_ptr() as usize;
            for w in chars.windows(2) {
                let (from, to) = (base + w[0].0, base + w[1].0 + w[1].1.len_utf8());
                tokens.push(Token {
                    offset_from: from,
                    offset_to: to,
                    position,
                    text: text[from..to].to_lowercase(),
                    position_length: 1,
                });
                position += 1;
            }
            position += 2;
        }
        BigramStream { tokens, next: 0 }
    }
}

impl TokenStream for BigramStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

fn bigrams(word: &str) -> Vec<String> {
    let mut tokenizer = BigramTokenizer;
    let mut stream = tokenizer.token_stream(word);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigrams_are_consecutive_pairs() {
        assert_eq!(bigrams("社保欠费"), vec!["社保", "保欠", "欠费"]);
        assert_eq!(bigrams("Credit"), vec!["cr", "re", "ed", "di", "it"]);
        assert!(bigrams("税").is_empty());
    }

    #[test]
    fn query_words_become_whole_terms() {
        assert_eq!(tokens("社会保险"), vec!["社会保险"]);
        assert_eq!(tokens("Credit"), vec!["credit"]);
        assert!(tokens("欠费").contains(&"欠费".to_string()));
    }
}
