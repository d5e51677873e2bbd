// tests/fuzz/fuzz_tokenizer.cpp: Tokenizer::load (models/text/tokenizer.h), the reader of a
// tokenizer.json: the JSON parser, the "tokenizer" tag, context_length, and the vocabulary
// checks (specials in place, unique normalised words). A file it accepts must then encode and
// decode any text without failing other than by the too-long ValueError, and save / load to
// the same tokenizer.
#include <cstdlib>
#include <string>

#include "models/text/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = ddpm::fuzz::write_scratch("tokenizer.json", data, size);
  ddpm::fuzz::expect_accept_or_refuse([&] {
    const ddpm::text::Tokenizer tok = ddpm::text::Tokenizer::load(path);
    // The fuzzed bytes as a prompt too: any byte string is a text.
    const std::string text(reinterpret_cast<const char*>(data), size < 64 ? size : 64);
    for (const std::string& t : {std::string("a dark coat"), text}) {
      const std::vector<std::int64_t> ids = tok.encode(t);  // ValueError when too long: a refusal
      if (ids.size() != static_cast<std::size_t>(tok.context_length())) std::abort();
      (void)tok.decode(ids);
    }
    tok.save(path + ".saved");
    if (ddpm::text::Tokenizer::load(path + ".saved").to_json() != tok.to_json()) std::abort();
  });
  return 0;
}
