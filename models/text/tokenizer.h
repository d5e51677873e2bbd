// models/text/tokenizer.h: a word-level tokenizer for captions and prompts (text
// conditioning, Rombach et al. 2022 sec. 3.3: the UNet's cross-attention reads the output of
// a text encoder tau_theta(y) run over these token ids).
//
// Normalisation: the text is lowercased (ASCII) and split into words, a word being a maximal
// run of [a-z0-9]; every other character (space, punctuation, '-', '/', bytes >= 0x80)
// separates words and is dropped. "a T-shirt!" -> a, t, shirt. "Dark  coat." -> dark, coat.
//
// Ids: 0 <pad>, 1 <unk>, 2 <bos>, 3 <eos> (kPadId .. kEosId), then one id per vocabulary word.
// A text becomes exactly context_length ids:
//   <bos> w_1 .. w_k <eos> <pad> .. <pad>        k <= context_length - 2
// A word not in the vocabulary becomes <unk>. A text of more than context_length - 2 words is
// a ValueError naming it: a prompt is never cut silently. The special tokens cannot be typed
// ('<' and '>' separate words), so "<pad>" in a prompt is the word "pad".
//
// The vocabulary built from a caption set is the 4 specials, then the distinct words by
// descending count, ties in alphabetical (byte) order: the same captions give the same ids on
// every machine, whatever their order.
//
// File: a JSON object {"tokenizer": "ddpm-word", "context_length": L, "vocab": [words...]}
// whose vocab[i] is the word of id i (the specials included). save() writes it atomically
// (engine/io/atomic_file.h); load() refuses a file whose specials are not in place, whose
// words repeat or are not normalised words, or whose context_length is below 3, with an
// IoError naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace ddpm::text {

inline constexpr std::int64_t kPadId = 0;
inline constexpr std::int64_t kUnkId = 1;
inline constexpr std::int64_t kBosId = 2;
inline constexpr std::int64_t kEosId = 3;
inline constexpr int kNumSpecialTokens = 4;
inline constexpr const char* kTokenizerFormat = "ddpm-word";

// The normalised words of `text` (see the header comment).
std::vector<std::string> split_words(const std::string& text);

// The smallest context length that holds every caption: the most words of one + 2 (<bos>,
// <eos>), and at least 3.
int context_length_for(const std::vector<std::string>& captions);

class Tokenizer {
 public:
  // The vocabulary of `captions` (header comment). ValueError when context_length < 3 or a
  // caption has more than context_length - 2 words (the caption, its count and the limit).
  static Tokenizer build(const std::vector<std::string>& captions, int context_length);

  // vocab[i] is the word of id i; ValueError when the specials are not vocab[0..3], a word
  // repeats or is not a normalised word, or context_length < 3.
  Tokenizer(std::vector<std::string> vocab, int context_length);

  int vocab_size() const { return static_cast<int>(vocab_.size()); }
  int context_length() const { return context_length_; }
  const std::vector<std::string>& vocabulary() const { return vocab_; }
  // The id of one normalised word, kUnkId when it is not in the vocabulary.
  std::int64_t id_of(const std::string& word) const;
  // The words of `texts` that are not in the vocabulary (encode reads them as <unk>), each
  // once, in the order they first appear: for warning about a prompt's typo.
  std::vector<std::string> unknown_words(const std::vector<std::string>& texts) const;

  // [context_length] ids (header comment); ValueError for a text that is too long.
  std::vector<std::int64_t> encode(const std::string& text) const;
  // [texts.size(), context_length] ids, row-major: row r is encode(texts[r]).
  std::vector<std::int64_t> encode_batch(const std::vector<std::string>& texts) const;
  // The words of a row of ids, space-separated, for messages: <bos>, <eos> and <pad> are
  // left out, <unk> is shown as "<unk>". ValueError for an id outside [0, vocab_size).
  std::string decode(const std::vector<std::int64_t>& ids) const;

  nlohmann::json to_json() const;
  // `where` names the source in messages (a file name). IoError when the object is malformed.
  static Tokenizer from_json(const nlohmann::json& j, const std::string& where);
  void save(const std::string& path) const;
  static Tokenizer load(const std::string& path);

 private:
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, std::int64_t> ids_;
  int context_length_ = 0;
};

}  // namespace ddpm::text
