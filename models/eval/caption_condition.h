// models/eval/caption_condition.h: the condition a text-conditioned run (ddpm-train
// --text-cond; models/text/text_conditioned.h) sees in `ddpm-eval bpd` and `nll`: every
// image's own caption, the one its training data would give it, so the number measured is the
// text-conditional likelihood -log p(x | caption).
//
// Which caption: the split's own captions when it has them (an image folder's
// metadata.jsonl), else the generated ones of a labelled dataset with class names
// (models/data/captions.h generate_captions: class name and brightness, as ddpm-train
// --text-cond generates them for the training split). The split's distinct captions become
// the text table of the model's denoiser (CaptionTable), each image's label the index of its
// caption, and label P = table size is the empty caption (the unconditional model of a run
// trained with caption dropout; nll's --null-label).
//
// Every caption is tokenized before any evaluation: a word the run's tokenizer never saw is
// read as <unk> (tokenizer.h), and a caption longer than its context is a ValueError naming it.
#pragma once

#include <string>

#include "models/data/captions.h"
#include "models/data/dataset.h"
#include "models/diffusion/gaussian_diffusion.h"
#include "models/text/text_conditioned.h"

namespace ddpm::eval {

struct CaptionCondition {
  CaptionTable table;          // the split's distinct captions; table.index[i] is image i's label
  diffusion::DenoiseFn fn;     // text.denoiser(table.texts, "")
  std::string source;          // "the data's own captions" or "generated captions", for the report
};

// Sets data.labels to the caption indices and data.num_classes to the table size, and returns
// the denoiser. ValueError naming the dataset when it has neither captions nor labels with
// class names, naming `what` (the mode) first.
CaptionCondition condition_on_captions(const text::TextConditionedUNet& text, Dataset& data, const std::string& what);

}  // namespace ddpm::eval
