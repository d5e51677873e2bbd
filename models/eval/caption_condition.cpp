// models/eval/caption_condition.cpp: see caption_condition.h.
#include "models/eval/caption_condition.h"

#include "engine/error.h"

namespace ddpm::eval {

CaptionCondition condition_on_captions(const text::TextConditionedUNet& text, Dataset& data, const std::string& what) {
  CaptionCondition c;
  if (data.has_captions()) {
    c.source = "the data's own captions";
  } else {
    DDPM_CHECK(data.has_labels() && !data.class_names.empty(),
               what << ": the model is text-conditioned and " << data.name
                    << " has no captions: give an image folder with a metadata.jsonl ({\"file_name\": ..., \"text\": "
                       "...} per line) or labelled data with class names, whose captions are generated");
    data.captions = generate_captions(data);
    c.source = "generated captions";
  }
  c.table = make_caption_table(data.captions);
  data.labels = c.table.index;
  data.num_classes = static_cast<int>(c.table.size());
  c.fn = text.denoiser(c.table.texts, "", {});  // tokenizes every caption now (ValueError for a long one)
  return c;
}

}  // namespace ddpm::eval
