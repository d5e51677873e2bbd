// The word-level tokenizer (models/text/tokenizer.h): normalisation, the deterministic
// vocabulary, encode / decode, unknown words, the too-long refusal, the JSON file and the
// loader's refusals of damaged files.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/io/atomic_file.h"
#include "models/text/tokenizer.h"
#include "support/temp_dir.h"
#include "support/value_error.h"

namespace ddpm::text {
namespace {

using ddpm::testing::expect_value_error;
using ddpm::testing::TempDir;

using ddpm::testing::expect_has;
using ddpm::testing::io_error_message;

TEST(Tokenizer, SplitsOnEveryCharacterOutsideLowercaseLettersAndDigits) {
  EXPECT_EQ(split_words("a T-shirt!"), (std::vector<std::string>{"a", "t", "shirt"}));
  EXPECT_EQ(split_words("  Dark\tcoat..NO.9 "), (std::vector<std::string>{"dark", "coat", "no", "9"}));
  EXPECT_EQ(split_words("caf\xc3\xa9"), (std::vector<std::string>{"caf"}));  // UTF-8 bytes separate
  EXPECT_TRUE(split_words(" -/!").empty());
  EXPECT_EQ(context_length_for({"a b c", "d", ""}), 5);
  EXPECT_EQ(context_length_for({}), 3);
}

TEST(Tokenizer, VocabularyIsByDescendingCountThenAlphabetical) {
  const std::vector<std::string> captions = {"a dark coat", "a light coat", "A dark bag", "zebra"};
  const Tokenizer tok = Tokenizer::build(captions, 6);
  // counts: a 3, coat 2, dark 2, bag 1, light 1, zebra 1.
  const std::vector<std::string> want = {"<pad>", "<unk>", "<bos>", "<eos>", "a",
                                         "coat",  "dark",  "bag",   "light", "zebra"};
  EXPECT_EQ(tok.vocabulary(), want);
  EXPECT_EQ(tok.vocab_size(), 10);
  EXPECT_EQ(tok.context_length(), 6);
  // The order of the captions does not matter.
  std::vector<std::string> reversed(captions.rbegin(), captions.rend());
  EXPECT_EQ(Tokenizer::build(reversed, 6).vocabulary(), want);
}

TEST(Tokenizer, EncodesBosWordsEosThenPadAndDecodesBack) {
  const Tokenizer tok = Tokenizer::build({"a dark coat", "a light bag"}, 7);
  const std::vector<std::int64_t> ids = tok.encode("A dark, COAT");
  ASSERT_EQ(ids.size(), 7u);
  EXPECT_EQ(ids, (std::vector<std::int64_t>{kBosId, tok.id_of("a"), tok.id_of("dark"), tok.id_of("coat"), kEosId,
                                            kPadId, kPadId}));
  EXPECT_EQ(tok.decode(ids), "a dark coat");
  // The empty prompt is <bos> <eos> and padding.
  EXPECT_EQ(tok.encode(""), (std::vector<std::int64_t>{kBosId, kEosId, 0, 0, 0, 0, 0}));
  // A batch is the rows one after the other.
  const std::vector<std::int64_t> batch = tok.encode_batch({"a light bag", "coat"});
  ASSERT_EQ(batch.size(), 14u);
  const std::vector<std::int64_t> first = tok.encode("a light bag"), second = tok.encode("coat");
  EXPECT_TRUE(std::equal(first.begin(), first.end(), batch.begin()));
  EXPECT_TRUE(std::equal(second.begin(), second.end(), batch.begin() + 7));
  expect_value_error([&] { tok.decode({2, 99}); }, "id 99 at position 1");
}

TEST(Tokenizer, UnknownWordsBecomeUnk) {
  const Tokenizer tok = Tokenizer::build({"dark coat"}, 5);
  const std::vector<std::int64_t> ids = tok.encode("dark zebra");
  EXPECT_EQ(ids, (std::vector<std::int64_t>{kBosId, tok.id_of("dark"), kUnkId, kEosId, kPadId}));
  EXPECT_EQ(tok.decode(ids), "dark <unk>");
  EXPECT_EQ(tok.id_of("zebra"), kUnkId);
  // "<pad>" typed in a prompt is the word "pad", never the special token.
  EXPECT_EQ(tok.encode("<pad>")[1], kUnkId);
  // Each unknown word once, in order of appearance (what ddpm-sample warns about).
  EXPECT_EQ(tok.unknown_words({"dark zebra", "Zebra coat", "a dark cat"}), (std::vector<std::string>{"zebra", "a", "cat"}));
  EXPECT_TRUE(tok.unknown_words({"Dark COAT!", ""}).empty());
}

TEST(Tokenizer, TooManyWordsIsAValueErrorNamingTextCountAndLimit) {
  const Tokenizer tok = Tokenizer::build({"a b"}, 5);
  EXPECT_EQ(tok.encode("a b a")[4], kEosId);  // 3 words: exactly full
  const std::string m = ddpm::testing::value_error_message([&] { tok.encode("a b a b"); });
  expect_has(m, "\"a b a b\"");
  expect_has(m, "has 4 words");
  expect_has(m, "holds at most 3");
  // build refuses a caption that could never be encoded, and a context without room for a word.
  expect_value_error([] { Tokenizer::build({"one two three"}, 4); }, "\"one two three\" has 3 words");
  expect_value_error([] { Tokenizer::build({"a"}, 2); }, "context_length must be at least 3");
}

TEST(Tokenizer, JsonFileRoundTrips) {
  TempDir dir;
  const Tokenizer tok = Tokenizer::build({"a dark coat", "a photo of an ankle boot"}, 9);
  const std::string path = dir.path + "/tokenizer.json";
  tok.save(path);
  const Tokenizer back = Tokenizer::load(path);
  EXPECT_EQ(back.vocabulary(), tok.vocabulary());
  EXPECT_EQ(back.context_length(), 9);
  EXPECT_EQ(back.encode("an ankle coat"), tok.encode("an ankle coat"));
  EXPECT_EQ(back.to_json(), tok.to_json());
}

TEST(Tokenizer, LoadRefusesDamagedFilesNamingThem) {
  TempDir dir;
  const std::string path = dir.path + "/tok.json";
  auto load_text = [&](const std::string& text) {
    write_file_atomic(path, text);
    return io_error_message([&] { Tokenizer::load(path); });
  };
  const std::string specials = R"("<pad>", "<unk>", "<bos>", "<eos>")";
  const std::string head = R"({"tokenizer": "ddpm-word", "context_length": )";
  // Valid to begin with, so each refusal below is caused by its one change.
  write_file_atomic(path, head + "4, \"vocab\": [" + specials + ", \"coat\"]}");
  EXPECT_EQ(Tokenizer::load(path).vocab_size(), 5);

  std::string m = load_text("{\"tokenizer\": ");
  expect_has(m, path);
  expect_has(m, "not valid JSON");
  expect_has(load_text("[1, 2]"), "does not hold a JSON object");
  expect_has(load_text(R"({"tokenizer": "bpe", "context_length": 4, "vocab": []})"), "lacks \"tokenizer\"");
  expect_has(load_text(head + "2, \"vocab\": [" + specials + "]}"), "\"context_length\" is 2");
  expect_has(load_text(head + "\"4\", \"vocab\": [" + specials + "]}"), "no integer \"context_length\"");
  expect_has(load_text(head + "4}"), "no \"vocab\" array");
  expect_has(load_text(head + "4, \"vocab\": [" + specials + ", 7]}"), "vocab entry 4 is number");
  m = load_text(head + R"(4, "vocab": ["<unk>", "<pad>", "<bos>", "<eos>"]})");
  expect_has(m, path);
  expect_has(m, "id 0 must be the special token <pad>");
  expect_has(load_text(head + R"(4, "vocab": ["<pad>"]})"), "fewer than the 4 special tokens");
  expect_has(load_text(head + "4, \"vocab\": [" + specials + ", \"coat\", \"bag\", \"coat\"]}"),
             "\"coat\" appears twice in the vocabulary (ids 4 and 6)");
  expect_has(load_text(head + "4, \"vocab\": [" + specials + ", \"Coat\"]}"), "entry 4 \"Coat\" is not a word");
  expect_has(load_text(head + "4, \"vocab\": [" + specials + ", \"\"]}"), "entry 4 \"\" is not a word");
  expect_has(io_error_message([&] { Tokenizer::load(dir.path + "/missing.json"); }), "missing.json");
}

TEST(Tokenizer, EveryTruncationOfASavedFileIsRefused) {
  TempDir dir;
  const std::string path = dir.path + "/tok.json";
  Tokenizer::build({"a dark coat", "a light bag"}, 5).save(path);
  const std::string full = read_file(path);
  ASSERT_EQ(full.back(), '\n');
  for (std::size_t len = 0; len + 1 < full.size(); ++len) {  // all but the final newline cut
    write_file_atomic(path, full.substr(0, len));
    expect_has(io_error_message([&] { Tokenizer::load(path); }), path);
  }
}

}  // namespace
}  // namespace ddpm::text
