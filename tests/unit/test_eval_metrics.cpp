// stepaudio/eval.h: normalization, Chinese numerals, edit counts, units, percentiles, manifest and
// report aggregation against hand-computed cases (docs/EVAL.md states the rules they check).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "stepaudio/error.h"
#include "stepaudio/eval.h"

using namespace stepaudio;
using namespace stepaudio::eval;

namespace {
std::vector<std::string> words(const std::string& s) {
  return split_units(s, Unit::wer);
}

void expect_counts(const EditCounts& c, size_t s, size_t d, size_t i, size_t hits) {
  EXPECT_EQ(c.substitutions, s);
  EXPECT_EQ(c.deletions, d);
  EXPECT_EQ(c.insertions, i);
  EXPECT_EQ(c.hits, hits);
}
}  // namespace

TEST(EvalNormalize, PunctuationCaseAndWidth) {
  EXPECT_EQ(normalize_text("Hello, World!"), "hello world");
  EXPECT_EQ(normalize_text("ＨＥＬＬＯ　ｗｏｒｌｄ！"), "hello world");  // full-width + U+3000
  EXPECT_EQ(normalize_text("你好，世界。"), "你好 世界");
  EXPECT_EQ(normalize_text("  «Ask   not»\t— what\n"), "ask not what");
  EXPECT_EQ(normalize_text("Don't stop; it’s fine"), "dont stop its fine");
  EXPECT_EQ(normalize_text("1,000 and 3.5, end."), "1000 and 3.5 end");
  EXPECT_EQ(normalize_text("well-known $5 + 2%"), "well known 5 2");
  EXPECT_EQ(normalize_text("a\u200Bb"), "ab");                     // format characters vanish
  EXPECT_EQ(normalize_text("STRASSE Straße"), "strasse strasse");  // full case folding
  EXPECT_EQ(normalize_text("ok\xff"), "ok");  // invalid UTF-8: U+FFFD, a symbol
  EXPECT_EQ(normalize_text(""), "");
  EXPECT_EQ(normalize_text("。！？"), "");
}

TEST(EvalNormalize, ChineseNumerals) {
  EXPECT_EQ(chinese_numerals_to_digits("九月十九号"), "9月19号");
  EXPECT_EQ(chinese_numerals_to_digits("二〇二六年"), "2026年");
  EXPECT_EQ(chinese_numerals_to_digits("二零二六年"), "2026年");
  EXPECT_EQ(chinese_numerals_to_digits("一百零五"), "105");
  EXPECT_EQ(chinese_numerals_to_digits("两千"), "2000");
  EXPECT_EQ(chinese_numerals_to_digits("十"), "10");
  EXPECT_EQ(chinese_numerals_to_digits("二十"), "20");
  EXPECT_EQ(chinese_numerals_to_digits("一十五"), "15");
  EXPECT_EQ(chinese_numerals_to_digits("一千零五十"), "1050");
  EXPECT_EQ(chinese_numerals_to_digits("两千零二十六"), "2026");
  EXPECT_EQ(chinese_numerals_to_digits("三十万"), "300000");
  EXPECT_EQ(chinese_numerals_to_digits("十万八千"), "108000");
  EXPECT_EQ(chinese_numerals_to_digits("一万零一"), "10001");
  EXPECT_EQ(chinese_numerals_to_digits("一万亿"), "1000000000000");
  EXPECT_EQ(chinese_numerals_to_digits("三亿五千万"), "350000000");
  // Colloquial: a last digit right after 百/千/万 is in the next lower place.
  EXPECT_EQ(chinese_numerals_to_digits("二百五"), "250");
  EXPECT_EQ(chinese_numerals_to_digits("三千五"), "3500");
  EXPECT_EQ(chinese_numerals_to_digits("一万五"), "15000");
  // Words that start with a big unit stay words; approximations keep their units.
  EXPECT_EQ(chinese_numerals_to_digits("千万不要"), "千万不要");
  EXPECT_EQ(chinese_numerals_to_digits("万一"), "万1");
  EXPECT_EQ(chinese_numerals_to_digits("三四十个"), "34十个");
  EXPECT_EQ(chinese_numerals_to_digits("十七八岁"), "十78岁");
  EXPECT_EQ(chinese_numerals_to_digits("查一下"), "查1下");
  EXPECT_EQ(chinese_numerals_to_digits("一百十"), "1百十");  // units must descend by place
  EXPECT_EQ(chinese_numerals_to_digits("no numerals"), "no numerals");
  // Through the whole normalization, both spellings meet.
  EXPECT_EQ(normalize_text("九月十九号"), normalize_text("9月19号"));
  EXPECT_EQ(normalize_text("二〇二六年"), normalize_text("2026年"));
  EXPECT_EQ(normalize_text("一百零五"), normalize_text("105"));
  EXPECT_EQ(normalize_text("两千"), normalize_text("2000"));
  EXPECT_EQ(normalize_text("２０２６年"), "2026年");  // full-width digits
}

TEST(EvalAlign, SubstitutionsDeletionsInsertions) {
  expect_counts(align(words("a b c"), words("a x c")), 1, 0, 0, 2);
  expect_counts(align(words("a b c"), words("a c")), 0, 1, 0, 2);
  expect_counts(align(words("a b"), words("a x b")), 0, 0, 1, 2);
  // the cat sat on the mat -> the cat sit on mat now: sat/sit, -the, +now.
  const EditCounts c = align(words("the cat sat on the mat"), words("the cat sit on mat now"));
  expect_counts(c, 1, 1, 1, 4);
  EXPECT_DOUBLE_EQ(*c.rate(), 3.0 / 6.0);
  // Equally short alignments: the one with the most hits. "a b" -> "b a": -a, b, +a (not two
  // substitutions); "a b c" -> "x y z": three substitutions (six deletions/insertions are longer).
  expect_counts(align(words("a b"), words("b a")), 0, 1, 1, 1);
  expect_counts(align(words("a b c"), words("x y z")), 3, 0, 0, 0);
  expect_counts(align(words("a b c d e"), words("b c d e a")), 0, 1, 1, 4);
  expect_counts(align(words("a a a"), words("a a a")), 0, 0, 0, 3);
}

TEST(EvalAlign, EmptySides) {
  const EditCounts ins = align({}, words("a b"));
  expect_counts(ins, 0, 0, 2, 0);
  EXPECT_FALSE(ins.rate().has_value());  // n/a: no reference units; the edits still count
  const EditCounts none = align({}, {});
  expect_counts(none, 0, 0, 0, 0);
  EXPECT_FALSE(none.rate().has_value());
  const EditCounts del = align(words("a b c"), {});
  expect_counts(del, 0, 3, 0, 0);
  EXPECT_DOUBLE_EQ(*del.rate(), 1.0);
  EditCounts sum = ins;
  sum += del;  // corpus: (2 + 3) edits over 3 reference units
  EXPECT_DOUBLE_EQ(*sum.rate(), 5.0 / 3.0);
}

TEST(EvalScore, CharactersWordsAndMixed) {
  TextScore zh =
      score_transcript("新闻说九月十九号就免费开放了。", "新闻说9月19号就免费开放了", "zh");
  EXPECT_EQ(zh.unit, Unit::cer);
  expect_counts(zh.counts, 0, 0, 0, 14);  // 新闻说 9 月 1 9 号 就免费开放了
  TextScore cer = score_transcript("今天天气很好", "今天天汽很好啊", "zh");
  expect_counts(cer.counts, 1, 0, 1, 5);
  EXPECT_DOUBLE_EQ(*cer.counts.rate(), 2.0 / 6.0);
  TextScore en = score_transcript("Give me a brief introduction to the Great Wall.",
                                  "give me brief introductions to the great wall", "en");
  EXPECT_EQ(en.unit, Unit::wer);
  expect_counts(en.counts, 1, 1, 0, 7);
  // Mixed script: CJK characters and the Latin word are one unit each.
  TextScore mixed = score_transcript("我用iPhone拍照", "我用 iphone 拍的照", "zh");
  EXPECT_EQ(mixed.unit, Unit::mer);
  EXPECT_EQ(split_units(mixed.reference_norm, Unit::mer),
            (std::vector<std::string>{"我", "用", "iphone", "拍", "照"}));
  expect_counts(mixed.counts, 0, 0, 1, 5);
  TextScore typo = score_transcript("我用iPhone拍照", "我用iPhon拍照", "");
  expect_counts(typo.counts, 1, 0, 0, 4);  // a misspelt word is one substitution
  // Korean is scored by syllable, spaces ignored.
  TextScore ko = score_transcript("안녕 하세요", "안녕하세요", "ko");
  EXPECT_EQ(ko.unit, Unit::cer);
  expect_counts(ko.counts, 0, 0, 0, 5);
}

TEST(EvalScore, UnitChoice) {
  EXPECT_EQ(choose_unit("hello world", "", "en"), Unit::wer);
  EXPECT_EQ(choose_unit("你好", "", "en"), Unit::cer);  // mostly-CJK text, whatever the tag
  EXPECT_EQ(choose_unit("2026", "", "zh"), Unit::cer);  // no CJK: a character language
  EXPECT_EQ(choose_unit("2026", "", "fr"), Unit::wer);
  EXPECT_EQ(choose_unit("", "你好", "en"), Unit::cer);  // empty reference: the hypothesis
  EXPECT_EQ(choose_unit("", "", "zh-TW"), Unit::cer);   // both empty: the language
  EXPECT_EQ(choose_unit("", "", ""), Unit::wer);
  EXPECT_EQ(choose_unit("用 ok 吧", "", "en"), Unit::mer);
  EXPECT_TRUE(is_character_language("yue"));
  EXPECT_TRUE(is_character_language("ZH_cn"));
  EXPECT_FALSE(is_character_language("en"));
  EXPECT_EQ(split_units("9月 19号", Unit::cer),
            (std::vector<std::string>{"9", "月", "1", "9", "号"}));
  EXPECT_EQ(split_units("9月 19号", Unit::mer), (std::vector<std::string>{"9", "月", "19", "号"}));
}

TEST(EvalStats, PercentilesAndRouge) {
  EXPECT_DOUBLE_EQ(*percentile({4, 1, 3, 2}, 50), 2.5);
  std::vector<double> v;
  for (int i = 1; i <= 20; ++i) v.push_back(i);
  EXPECT_NEAR(*percentile(v, 95), 19.05, 1e-12);  // h = 19 * 0.95 = 18.05
  EXPECT_DOUBLE_EQ(*percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(*percentile(v, 100), 20);
  EXPECT_DOUBLE_EQ(*percentile({7}, 95), 7);
  EXPECT_FALSE(percentile({}, 50).has_value());
  EXPECT_DOUBLE_EQ(*rouge_l_f1("the cat sat", "the cat", "en"), 0.8);  // P 1, R 2/3
  EXPECT_DOUBLE_EQ(*rouge_l_f1("免费开放", "开放", "zh"), 2 * 1.0 * 0.5 / 1.5);
  EXPECT_DOUBLE_EQ(*rouge_l_f1("a", "", "en"), 0.0);
  EXPECT_FALSE(rouge_l_f1("", "", "en").has_value());
}

TEST(EvalManifest, ParsesFieldsAndLabels) {
  const std::string text =
      "{\"path\": \"a.wav\", \"lang\": \"zh\", \"reference\": \"你好\", \"label\": null}\n"
      "\n"
      "{\"path\": \"/abs/b.flac\", \"lang\": null, \"label\": {\"emotion\": \"Angry (愤怒)\"}}\n"
      "{\"path\": \"c.wav\", \"task\": \"tts_prompt\", \"label\": \"female\"}\n"
      "{\"path\": \"d.wav\", \"label\": \"happiness\", \"reference_summary\": \"s\"}\n";
  auto items = parse_manifest(text, "/data", "m.jsonl");
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].line, 1u);
  EXPECT_EQ(items[0].resolved, "/data/a.wav");
  EXPECT_EQ(items[0].reference.value_or(""), "你好");
  EXPECT_FALSE(items[0].emotion.has_value());
  EXPECT_EQ(items[1].line, 3u);
  EXPECT_EQ(items[1].resolved, "/abs/b.flac");
  EXPECT_EQ(items[1].lang, "");
  EXPECT_EQ(items[1].emotion.value_or(""), "angry");
  EXPECT_FALSE(items[2].emotion.has_value());  // a voice label of a TTS prompt, not an emotion
  EXPECT_EQ(items[3].emotion.value_or(""), "happy");
  EXPECT_EQ(items[3].reference_summary.value_or(""), "s");
  EXPECT_EQ(normalize_emotion_label(" Neutral (中立)"), "neutral");
}

TEST(EvalManifest, MalformedLinesNameTheLine) {
  auto error_of = [](const std::string& text) {
    try {
      parse_manifest(text, ".", "m.jsonl");
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("{\"path\": \"a\"}\n{\"path\": \"b\"\n").find("m.jsonl:2: not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of("{\"lang\": \"en\"}").find("m.jsonl:1: \"path\""), std::string::npos);
  EXPECT_NE(error_of("[1]").find("m.jsonl:1: each line must be a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{\"path\": \"a\", \"reference\": 5}").find("\"reference\" must be a string"),
            std::string::npos);
  EXPECT_NE(error_of("\n\n").find("no items"), std::string::npos);
  try {
    read_manifest("/nonexistent/manifest.jsonl");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::io);
  }
}

TEST(EvalReport, CorpusRatesEmotionCostAndRenderings) {
  EvalRun run;
  run.manifest = "m.jsonl";
  run.created = "2026-01-01T00:00:00Z";
  run.items = parse_manifest(
      "{\"path\": \"a.wav\", \"lang\": \"en\", \"reference\": \"a b c d\"}\n"
      "{\"path\": \"b.wav\", \"lang\": \"en\", \"reference\": \"x y\"}\n"
      "{\"path\": \"c.wav\", \"lang\": \"zh\", \"label\": {\"emotion\": \"angry\"}}\n"
      "{\"path\": \"d.wav\", \"lang\": \"zh\", \"label\": {\"emotion\": \"happy\"}}\n",
      ".", "m.jsonl");
  run.audio_seconds = {60, 30, 90, 0};
  SystemSpec ours{"ours", "us", true, false, true, 36.0, std::nullopt};
  SystemSpec base{"baseline", "them", true, false, false, std::nullopt, 0.006};
  run.systems = {ours, base};
  auto ok = [](std::string text, double ms, std::string emotion = "") {
    Outcome o;
    o.ok = true;
    o.transcript = std::move(text);
    o.wall_ms = ms;
    o.emotion = std::move(emotion);
    return o;
  };
  Outcome failed;
  failed.error_code = "bad_audio";
  failed.error_message = "corrupt </script> file";
  run.outcomes = {{ok("a b c d", 1000), ok("x", 3000), ok("", 2000, "angry"), failed},
                  {ok("a c d e", 500), ok("x y", 700), ok("", 900), failed}};
  const auto r = nlohmann::json::parse(report_json(run));
  const auto& us = r["systems"]["ours"];
  // ours: item 1 exact, item 2 one deletion of 2: corpus 1 / 6, mean of item rates 0.25.
  EXPECT_EQ(us["accuracy"]["wer"]["deletions"], 1);
  EXPECT_EQ(us["accuracy"]["wer"]["reference_units"], 6);
  EXPECT_DOUBLE_EQ(us["accuracy"]["wer"]["rate"].get<double>(), 1.0 / 6.0);
  EXPECT_DOUBLE_EQ(us["accuracy"]["wer"]["mean_item_rate"].get<double>(), 0.25);
  EXPECT_EQ(us["items_ok"], 3);
  EXPECT_EQ(us["items_failed"], 1);
  EXPECT_EQ(us["emotion"]["items"], 1);
  EXPECT_EQ(us["emotion"]["labels"], nlohmann::json({"angry"}));
  EXPECT_EQ(us["emotion"]["confusion"], nlohmann::json({{1}}));
  // Cost of ours: 6 s of compute at $36/hour = $0.06 for 180 s of audio: $1.20 per audio hour.
  EXPECT_NEAR(us["cost"]["total"].get<double>(), 0.06, 1e-12);
  EXPECT_NEAR(us["cost"]["per_request"].get<double>(), 0.02, 1e-12);
  EXPECT_NEAR(us["cost"]["per_audio_hour"].get<double>(), 1.2, 1e-12);
  EXPECT_NEAR(us["rtf"].get<double>(), 6.0 / 180.0, 1e-12);
  EXPECT_NEAR(us["latency_ms"]["wall"]["p50"].get<double>(), 2000, 1e-9);
  const auto& them = r["systems"]["baseline"];
  // baseline: a c d e vs a b c d: -b, +e; x y exact: 2 / 6.
  EXPECT_EQ(them["accuracy"]["wer"]["insertions"], 1);
  EXPECT_DOUBLE_EQ(them["accuracy"]["wer"]["rate"].get<double>(), 2.0 / 6.0);
  EXPECT_TRUE(them["emotion"].is_null());
  EXPECT_NEAR(them["cost"]["per_audio_hour"].get<double>(), 0.36, 1e-12);
  EXPECT_NEAR(them["cost"]["total"].get<double>(), 180 / 60.0 * 0.006, 1e-12);
  EXPECT_EQ(r["cost_table"].size(), 2u);
  EXPECT_EQ(r["items"][3]["ours"]["error"]["code"], "bad_audio");
  EXPECT_FALSE(nlohmann::json::parse(summary_json(report_json(run))).contains("items"));

  const std::string md = report_markdown(report_json(run));
  EXPECT_NE(md.find("| WER corpus (S, D, I of N) | 16.67% (S 0, D 1, I 0 of 6) | 33.33% (S 0, D 1, "
                    "I 1 of 6) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| ours: us | compute time | $36.00 / hour | $0.0200 | $1.20 | $0.0600 |"),
            std::string::npos)
      << md;
  const std::string html = report_html(report_json(run));
  EXPECT_EQ(html.find("http"), std::string::npos);
  // The markup holds no chart: every mark is drawn by the script from the embedded JSON.
  EXPECT_EQ(html.substr(0, html.find("<script")).find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("corrupt </script>"), std::string::npos);
  EXPECT_NE(html.find("corrupt \\u003c\\/script\\u003e"), std::string::npos);
}
