// `kto-studio-cli label --image ID (--like|--dislike|--clear|--undo)`: one label change, kept in
// the image's history.
#include <iostream>

#include "app/cli/command.h"
#include "app/cli/workspace_options.h"
#include "storage/store/store.h"

namespace {

struct LabelArgs {
    std::string workspace;
    std::int64_t image = 0;
    bool like = false, dislike = false, clear = false, undo = false;
};

int run_label(const LabelArgs& a) {
    kto::storage::Store store(kto::cli::open_workspace(a.workspace));
    kto::storage::Label now;
    if (a.undo) {
        now = store.undo_label(a.image);
    } else {
        now = a.like ? kto::storage::Label::Like
              : a.dislike ? kto::storage::Label::Dislike
                          : kto::storage::Label::None;
        store.set_label(a.image, now);
    }
    std::cout << "image " << a.image << ": " << kto::storage::label_name(now) << "\n";
    return 0;
}

kto::cli::CommandRegistrar reg{
    {"label", "Like, dislike, clear or undo the label of one image",
     [](CLI::App& sub) -> std::function<int()> {
         auto args = std::make_shared<LabelArgs>();
         kto::cli::add_workspace_option(sub, args->workspace);
         sub.add_option("--image", args->image, "Image id (see `list`)")->required();
         auto* action = sub.add_option_group("action", "exactly one of");
         action->add_flag("--like", args->like, "Mark the image liked");
         action->add_flag("--dislike", args->dislike, "Mark the image disliked");
         action->add_flag("--clear", args->clear, "Remove the label (recorded in the history)");
         action->add_flag("--undo", args->undo, "Undo the image's last label change");
         action->require_option(1);
         return [args] { return run_label(*args); };
     }}};

}  // namespace
