#include "models/text/tokenizer.h"

#include <algorithm>
#include <map>
#include <utility>

#include "engine/error.h"
#include "engine/io/atomic_file.h"

namespace ddpm::text {

namespace {

const char* const kSpecials[kNumSpecialTokens] = {"<pad>", "<unk>", "<bos>", "<eos>"};

bool is_word_char(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

unsigned char to_lower_ascii(unsigned char c) { return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c; }

bool is_normalised_word(const std::string& w) {
  if (w.empty()) return false;
  for (unsigned char c : w)
    if (!is_word_char(c)) return false;
  return true;
}

void check_context_length(int context_length) {
  DDPM_CHECK(context_length >= 3, "tokenizer: context_length must be at least 3 (<bos>, one word, <eos>), got "
                                      << context_length);
}

// The ValueError for a text whose `words` words do not fit in `context_length` ids.
void check_fits(const std::string& text, std::size_t words, int context_length) {
  DDPM_CHECK(words + 2 <= static_cast<std::size_t>(context_length),
             "tokenizer: the text \"" << text << "\" has " << words << " words but the context length "
                                      << context_length << " holds at most " << context_length - 2
                                      << " (2 ids go to <bos> and <eos>); shorten it or use a larger context length");
}

}  // namespace

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::string cur;
  for (unsigned char raw : text) {
    const unsigned char c = to_lower_ascii(raw);
    if (is_word_char(c)) {
      cur.push_back(static_cast<char>(c));
    } else if (!cur.empty()) {
      words.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

int context_length_for(const std::vector<std::string>& captions) {
  std::size_t most = 1;
  for (const std::string& c : captions) most = std::max(most, split_words(c).size());
  return static_cast<int>(most + 2);
}

Tokenizer::Tokenizer(std::vector<std::string> vocab, int context_length)
    : vocab_(std::move(vocab)), context_length_(context_length) {
  check_context_length(context_length);
  DDPM_CHECK(vocab_.size() >= static_cast<std::size_t>(kNumSpecialTokens),
             "tokenizer: the vocabulary has " << vocab_.size() << " entries, fewer than the " << kNumSpecialTokens
                                              << " special tokens <pad> <unk> <bos> <eos>");
  for (int s = 0; s < kNumSpecialTokens; ++s)
    DDPM_CHECK(vocab_[s] == kSpecials[s], "tokenizer: id " << s << " must be the special token " << kSpecials[s]
                                                           << ", found \"" << vocab_[s] << "\"");
  ids_.reserve(vocab_.size());
  for (std::size_t i = kNumSpecialTokens; i < vocab_.size(); ++i) {
    const std::string& w = vocab_[i];
    DDPM_CHECK(is_normalised_word(w), "tokenizer: vocabulary entry " << i << " \"" << w
                                                                     << "\" is not a word of lowercase letters and digits "
                                                                        "(no text would ever encode to it)");
    const bool fresh = ids_.emplace(w, static_cast<std::int64_t>(i)).second;
    DDPM_CHECK(fresh, "tokenizer: the word \"" << w << "\" appears twice in the vocabulary (ids " << ids_.at(w)
                                               << " and " << i << ")");
  }
}

Tokenizer Tokenizer::build(const std::vector<std::string>& captions, int context_length) {
  check_context_length(context_length);
  std::map<std::string, std::int64_t> counts;  // ordered: ties come out alphabetical below
  for (const std::string& c : captions) {
    const std::vector<std::string> words = split_words(c);
    check_fits(c, words.size(), context_length);
    for (const std::string& w : words) counts[w] += 1;
  }
  std::vector<std::pair<std::string, std::int64_t>> order(counts.begin(), counts.end());
  // Descending count; stable_sort keeps the map's alphabetical order among equal counts.
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> vocab(kSpecials, kSpecials + kNumSpecialTokens);
  for (auto& [w, n] : order) vocab.push_back(w);
  return Tokenizer(std::move(vocab), context_length);
}

std::int64_t Tokenizer::id_of(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? kUnkId : it->second;
}

std::vector<std::string> Tokenizer::unknown_words(const std::vector<std::string>& texts) const {
  std::vector<std::string> out;
  for (const std::string& t : texts)
    for (const std::string& w : split_words(t))
      if (id_of(w) == kUnkId && std::find(out.begin(), out.end(), w) == out.end()) out.push_back(w);
  return out;
}

std::vector<std::int64_t> Tokenizer::encode(const std::string& text) const {
  const std::vector<std::string> words = split_words(text);
  check_fits(text, words.size(), context_length_);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(context_length_), kPadId);  // [context_length]
  ids[0] = kBosId;
  for (std::size_t k = 0; k < words.size(); ++k) ids[k + 1] = id_of(words[k]);
  ids[words.size() + 1] = kEosId;
  return ids;
}

std::vector<std::int64_t> Tokenizer::encode_batch(const std::vector<std::string>& texts) const {
  std::vector<std::int64_t> out;  // [texts.size(), context_length]
  out.reserve(texts.size() * static_cast<std::size_t>(context_length_));
  for (const std::string& t : texts) {
    const std::vector<std::int64_t> row = encode(t);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids) const {
  std::string out;
  for (std::size_t k = 0; k < ids.size(); ++k) {
    const std::int64_t id = ids[k];
    DDPM_CHECK(id >= 0 && id < vocab_size(), "tokenizer: decode: id " << id << " at position " << k
                                                                      << " is outside the vocabulary [0, "
                                                                      << vocab_size() << ")");
    if (id == kPadId || id == kBosId || id == kEosId) continue;
    if (!out.empty()) out += ' ';
    out += vocab_[static_cast<std::size_t>(id)];
  }
  return out;
}

nlohmann::json Tokenizer::to_json() const {
  return nlohmann::json{{"tokenizer", kTokenizerFormat}, {"context_length", context_length_}, {"vocab", vocab_}};
}

Tokenizer Tokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  DDPM_CHECK_AS(j.is_object(), IoError, "tokenizer file '" << where << "' does not hold a JSON object");
  DDPM_CHECK_AS(j.contains("tokenizer") && j["tokenizer"].is_string() && j["tokenizer"] == kTokenizerFormat, IoError,
                "tokenizer file '" << where << "' lacks \"tokenizer\": \"" << kTokenizerFormat
                                   << "\" (it is not a tokenizer written by this program)");
  DDPM_CHECK_AS(j.contains("context_length") && j["context_length"].is_number_integer(), IoError,
                "tokenizer file '" << where << "' has no integer \"context_length\"");
  const std::int64_t length = j["context_length"].get<std::int64_t>();
  DDPM_CHECK_AS(length >= 3 && length <= (1 << 20), IoError,
                "tokenizer file '" << where << "': \"context_length\" is " << length
                                   << ", outside [3, 1048576] (<bos>, at least one word and <eos>)");
  DDPM_CHECK_AS(j.contains("vocab") && j["vocab"].is_array(), IoError,
                "tokenizer file '" << where << "' has no \"vocab\" array");
  std::vector<std::string> vocab;
  vocab.reserve(j["vocab"].size());
  for (std::size_t i = 0; i < j["vocab"].size(); ++i) {
    const nlohmann::json& w = j["vocab"][i];
    DDPM_CHECK_AS(w.is_string(), IoError,
                  "tokenizer file '" << where << "': vocab entry " << i << " is " << w.type_name() << ", not a string");
    vocab.push_back(w.get<std::string>());
  }
  try {
    return Tokenizer(std::move(vocab), static_cast<int>(length));
  } catch (const ValueError& e) {
    DDPM_THROW(IoError, "tokenizer file '" << where << "' is invalid: " << strip_source_locations(e.what()));
  }
}

void Tokenizer::save(const std::string& path) const { write_file_atomic(path, to_json().dump(1) + "\n"); }

Tokenizer Tokenizer::load(const std::string& path) {
  const std::string bytes = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    DDPM_THROW(IoError, "tokenizer file '" << path << "' is not valid JSON: " << e.what());
  }
  return from_json(j, path);
}

}  // namespace ddpm::text
