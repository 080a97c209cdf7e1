// mtrank: train, evaluate and run multi-task ranking models.
#include <cctype>
#include <cstdio>
#include <string>
#include <exception>
#include <fstream>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "common/system.h"
#include "data/simulate.h"
#include "data/synth.h"
#include "serve/server.h"

// Serving and argument parsing stay free of LibTorch's headers (docs/architecture.md).
#ifdef C10_MACROS_MACROS_H_
#error "torch headers reached main.cpp: include them only in the model, train and scoring sources"
#endif

int main(int argc, char** argv) {
  mtrank::ensure_fast_blas(argc, argv);
  CLI::App app{
      "mtrank: multi-task ranking models for recommender systems, trained and evaluated natively.\n"
      "Start with 'mtrank quickstart', then 'mtrank train --config CFG.toml --out MODEL_DIR'.\n"
      "Config reference: docs/config.md"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mtrank 0.1.0");

  mtrank::cli::QuickstartOptions qs;
  auto* quickstart = app.add_subcommand(
      "quickstart", "Generate a synthetic impression log, train the default MMoE on it, and print its metrics.");
  quickstart->add_option("--dir", qs.dir, "Working directory for the data, config and model")->capture_default_str();
  quickstart->add_option("--rows", qs.rows, "Rows of synthetic data to generate")->capture_default_str();
  quickstart->add_option("--threads", qs.threads, "Threads (0 = all cores)")->capture_default_str();

  auto* synth = app.add_subcommand("synth", "Generate synthetic multi-task data sets.");
  synth->require_subcommand(1);
  mtrank::data::MmoeSynthOptions mm;
  std::string mm_out;
  auto* synth_mmoe = synth->add_subcommand(
      "mmoe", "The MMoE paper's generator: two regression tasks y1, y2 whose correlation follows --correlation.");
  synth_mmoe->add_option("--rows", mm.rows, "Rows to generate")->capture_default_str();
  synth_mmoe->add_option("--correlation", mm.correlation, "Task correlation p in [-1, 1]")->capture_default_str();
  synth_mmoe->add_option("--seed", mm.seed, "Random seed")->capture_default_str();
  synth_mmoe->add_option("--dim", mm.dim, "Input dimension d")->capture_default_str();
  synth_mmoe->add_option("--scale", mm.scale, "Weight scale c")->capture_default_str();
  synth_mmoe->add_option("--sin-terms", mm.sin_terms, "Number of sine terms m")->capture_default_str();
  synth_mmoe->add_option("--noise", mm.noise_variance, "Label noise variance")->capture_default_str();
  synth_mmoe->add_option("--out", mm_out, "Output CSV file")->required();
  synth_mmoe->footer(
      "y_k = w_k.x + sum_i sin(alpha_i w_k.x + beta_i) + noise, with w1 = c u1 and\n"
      "w2 = c (p u1 + sqrt(1-p^2) u2) for orthogonal unit vectors u1, u2 (Ma et al. 2018).\n"
      "Lower p means less related tasks. Example:\n"
      "  mtrank synth mmoe --rows 100000 --correlation 0.5 --seed 1 --out synth.csv");
  mtrank::data::RankingSynthOptions rk;
  std::string rk_out;
  auto* synth_ranking = synth->add_subcommand(
      "ranking", "A synthetic impression log: click, like and watch_time tasks over users and items.");
  synth_ranking->add_option("--rows", rk.rows, "Rows to generate")->capture_default_str();
  synth_ranking->add_option("--seed", rk.seed, "Random seed")->capture_default_str();
  synth_ranking->add_option("--out", rk_out, "Output CSV file")->required();

  mtrank::data::SimulateOptions sim;
  std::string click_model = "pbm";
  auto* simulate = app.add_subcommand(
      "simulate", "Simulate an impression log with known true relevance and position bias from a ratings file.");
  simulate->add_option("--ratings", sim.ratings, "Ratings file (CSV/TSV, gzip): user, item, rating[, title, year, genres]")
      ->capture_default_str();
  simulate->add_option("--out", sim.out_dir, "Output folder")->required();
  simulate->add_option("--user-column", sim.user_column, "User column")->capture_default_str();
  simulate->add_option("--item-column", sim.item_column, "Item column")->capture_default_str();
  simulate->add_option("--rating-column", sim.rating_column, "Rating column")->capture_default_str();
  simulate->add_option("--title-column", sim.title_column, "Item title column (\"\" = none); its words become title_words")
      ->capture_default_str();
  simulate->add_option("--year-column", sim.year_column, "Item year column (\"\" = none)")->capture_default_str();
  simulate->add_option("--genres-column", sim.genres_column, "Item genres column, |-separated (\"\" = none)")
      ->capture_default_str();
  simulate->add_option("--max-rating", sim.max_rating, "Top of the rating scale")->capture_default_str();
  simulate->add_option("--sessions", sim.sessions, "Sessions to simulate")->capture_default_str();
  simulate->add_option("--positions", sim.positions, "Items shown per session, at positions 1..K")->capture_default_str();
  simulate->add_option("--rated-share", sim.rated_share,
                       "Probability that a candidate is one the user rated (else drawn by popularity)")
      ->capture_default_str();
  simulate->add_option("--click-model", click_model,
                       "pbm (theta_k x P(relevant)), cascade (stop after the first click), trust (Agarwal et al. 2019), "
                       "additive (log theta_k added to the logit)")
      ->capture_default_str();
  simulate->add_option("--eta", sim.eta, "Position bias strength: theta_k = (1/k)^eta")->capture_default_str();
  simulate->add_option("--epsilon", sim.epsilon, "Click noise: P(relevant | y) = eps + (1-eps)(2^y-1)/15")
      ->capture_default_str();
  simulate->add_option("--logger", sim.logger,
                       "Logging policy: weak, medium, strong (true rating + noise of sd 2, 1, 0.25, fixed per user and item "
                       "as a deployed model's errors are), random, model "
                       "(a factorization fitted on --logger-share of the ratings), or popularity (the most rated "
                       "items first, the same order for every user)")
      ->capture_default_str();
  simulate->add_option("--logger-share", sim.logger_share, "Share of ratings the 'model' logger learns from")
      ->capture_default_str();
  simulate->add_flag("--plackett-luce", sim.plackett_luce, "Sample the logged ranking (Plackett-Luce on exp(score))");
  simulate->add_option("--swap-share", sim.swap_share, "Share of positions swapped with a random one after ranking")
      ->capture_default_str();
  simulate->add_option("--val-users", sim.val_users, "Share of users whose sessions form val.csv")->capture_default_str();
  simulate->add_option("--test-users", sim.test_users, "Share of users whose sessions form test.csv")
      ->capture_default_str();
  simulate->add_option("--seed", sim.seed, "Random seed (the same seed gives the same files)")->capture_default_str();
  simulate->add_option("--mf-dim", sim.mf_dim, "Width of the factorization that gives unrated pairs a relevance")
      ->capture_default_str();
  simulate->add_option("--mf-epochs", sim.mf_epochs, "SGD epochs of that factorization")->capture_default_str();
  simulate->add_flag("--quiet", sim.quiet, "No progress bar");
  simulate->footer(
      "True relevance: grade y = round(rating) - 1 in 0..4, the user's rating where there is one, else a\n"
      "biased matrix factorization's prediction. Each session: a user, a device (mobile, desktop, tv:\n"
      "theta_k = (1/k)^(eta x 1.25, 1, 0.75)), an hour, K candidates ranked by the logger, clicks from\n"
      "the click model; for clicks a watch fraction, a like and a rating from y. Users are split into\n"
      "train, val and test. Writes OUT/{train,val,test}.csv (columns session, user, item, device, hour,\n"
      "position, year, genres, title_words, click, watch, like, rating), OUT/{train,val,test}.truth.csv\n"
      "(row for row: grade, true_rating, p_relevant, p_examined, p_click), OUT/examination.csv,\n"
      "OUT/items.csv (the item catalog: item, year, genres, title_words; for serve --catalog),\n"
      "OUT/test.relevance.csv (every test user and item: grade, true_rating; to measure what any\n"
      "recommender retrieves) and\n"
      "OUT/simulation.json. Example (then train examples/movielens/youtube.toml on it):\n"
      "  mtrank simulate --out sim --eta 1 --logger medium --seed 1");

  mtrank::cli::TrainOptions tr;
  auto* train = app.add_subcommand("train", "Fit the preprocessing and train a model from a TOML config.");
  train->add_option("--config", tr.configs,
                    "Config file (see docs/config.md); repeat to overlay files in order, later ones win")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("--out", tr.out, "Model directory to write")->required();
  train->add_option("--train", tr.train,
                     "Training data (overrides data.train): FILE, several files, or a quoted glob such as "
                     "'logs/day-*.csv.gz', read in turn as one data set (each file with the same header)");
  train->add_option("--val", tr.val, "Validation data for early stopping (overrides data.val; files or a glob)");
  train->add_option("--test", tr.test, "Test data, evaluated once at the end (overrides data.test; files or a glob)");
  train->add_option("--metrics-out", tr.metrics_out, "Write metrics JSON here");
  train->add_option("--threads", tr.threads, "Threads (0 = all cores; default: train.threads)");
  train->add_option("--seed", tr.seed, "Random seed (default: train.seed)");
  train->add_option("--max-steps", tr.max_steps,
                    "Sequential models: stop after N optimizer steps (validation and the test evaluation still run; "
                    "default: train.max_steps)");
  train->add_option("--items", tr.items,
                    "Sequential models: the item table whose sequential.text_columns and multi_hot_columns are learned "
                    "item features (overrides data.items)")
      ->check(CLI::ExistingFile);
  train->add_option("--item-vectors", tr.item_vectors,
                    "Sequential models: a file of frozen item vectors (.npy with the id in column 0, or "
                    "'item<TAB>v1 v2 ...' text as `mtrank item-vectors` writes); repeat for several, concatenated "
                    "(overrides data.item_vectors)")
      ->check(CLI::ExistingFile);
  train->add_flag("--quiet", tr.quiet, "No progress bars");
  train->add_option("--warm-start", tr.warm_start,
                    "Initialize from OLD_MODEL_DIR (trained on older data): shared categories keep their embeddings "
                    "and wide weights, vocabularies grow with new categories, matching dense weights are kept")
      ->check(CLI::ExistingDirectory);
  train->add_flag("--resume", tr.resume,
                  "Continue an interrupted run from MODEL_DIR.checkpoint (written after every epoch; for a "
                  "[sequential] model after every validation) to the same result as an uninterrupted run");
  train->add_flag("--stream", tr.stream,
                  "Stream the training rows from featurized blocks on disk, so memory holds a shuffle buffer "
                  "(data.shuffle_buffer_rows), not the data. Without it, training streams only when the featurized "
                  "rows would pass data.memory_budget_mb (default: half this machine's or cgroup's memory)");
  train->add_option("--nproc-per-node", tr.nproc_per_node,
                    "Data-parallel training: start N worker processes on this machine (torchrun's environment; the "
                    "batch is split among them, the model is the one a single process trains). On several machines "
                    "run one mtrank train per worker with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set instead "
                    "(docs/distributed.md)")
      ->check(CLI::Range(1, 1024));
  train->add_option("--dist-timeout", tr.dist_timeout,
                    "Data-parallel training: seconds a worker waits for the others (to join, or in any exchange) "
                    "before the run fails naming it")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  train->footer(
      "Example (census, from the repository root):\n"
      "  mtrank train --config examples/census/mmoe.toml --out model --metrics-out metrics.json\n"
      "A sequential (next-item) model trains from one interaction log, split leave-one-out:\n"
      "  mtrank train --config examples/ml-1m/lru.toml --train ../shared/datasets/ml-1m.txt.gz --out M \\\n"
      "    --metrics-out m.json   (metrics at every Matryoshka width under \"widths\")\n"
      "Writes MODEL_DIR with config.toml, preprocess.json, weights.pt, meta.json and manifest.json\n"
      "(sizes and checksums, checked at every load); an existing\n"
      "model there is replaced only once the new one is complete. With data.cache_dir set, repeated\n"
      "runs skip text parsing. Exit codes: 2 bad config, 3 bad data, 4 bad model, 1 other errors\n"
      "(training that diverged, named by epoch and step, is one of them).");

  mtrank::cli::EvalOptions ev;
  auto* evalc = app.add_subcommand("eval", "Evaluate a trained model on a labelled file.");
  evalc->add_option("--model", ev.model, "Model directory from 'mtrank train'")->required();
  evalc->add_option("--data", ev.data, "Data file with the label columns")->required();
  evalc->add_option("--metrics-out", ev.metrics_out, "Write metrics JSON here");
  evalc->add_option("--threads", ev.threads, "Threads (0 = all cores)");
  evalc->add_flag("--as-served", ev.as_served,
                  "Read the bias features (bias = true: position, device) as missing, as 'mtrank serve' does");
  evalc->add_option("--truth", ev.truth,
                    "Ground truth, row for row with --data (mtrank simulate's DIR/test.truth.csv): NDCG@5 and @10 of "
                    "the served ranking (bias features missing) within each data.group_column list, and the bias "
                    "tower's learned bias by position against the true log examination")
      ->check(CLI::ExistingFile);
  evalc->add_option("--truth-column", ev.truth_column, "Graded relevance column of --truth")->capture_default_str();
  evalc->add_option("--max-len", ev.max_len,
                    "Sequential models: the input window at evaluation (default: the model's max_len). A window as long "
                    "as the longest history reads every event, as a served user's live state does");
  evalc->add_option("--rank-by", ev.rank_by, "Rank by this task's prediction (default: the model's [serve] score)");

  mtrank::cli::ExportOptions ex;
  auto* exportc = app.add_subcommand("export", "Write one width of a sequential (Matryoshka) model as a model of its own.");
  exportc->add_option("--model", ex.model, "Sequential model directory from 'mtrank train'")->required();
  exportc->add_option("--width", ex.width, "One of the model's widths ([sequential] widths)")->required();
  exportc->add_option("--out", ex.out, "Model directory to write")->required();
  exportc->footer(
      "Every layer of a Matryoshka model is prefix-closed, so its width-W model is the leading slice of\n"
      "every tensor: smaller files and faster scoring, and 'mtrank eval' on it gives the full model's\n"
      "width-W metrics. Example:\n"
      "  mtrank export --model M --width 16 --out M16 && mtrank eval --model M16 --data ../shared/datasets/ml-1m.txt.gz");

  mtrank::cli::RecommendOptions rc;
  auto* recommendc = app.add_subcommand("recommend", "Print the items a sequential model recommends after a history.");
  recommendc->add_option("--model", rc.model, "Sequential model directory from 'mtrank train' or 'mtrank export'")->required();
  recommendc->add_option("--history", rc.history,
                         "The user's items, oldest first, separated by spaces or commas (ids as in the training log)")
      ->required();
  recommendc->add_option("--width", rc.width, "Score at this Matryoshka width (default: the full width)");
  recommendc->add_option("-k", rc.k, "How many items")->capture_default_str();
  recommendc->add_flag("--json", rc.json, "Print {\"items\": [{\"item\": .., \"score\": ..}, ..]} instead of lines");
  recommendc->footer(
      "Prints 'rank<TAB>item<TAB>score' lines, best first; the history's items are never recommended, and\n"
      "items the model does not know are skipped (counted on stderr). Example:\n"
      "  mtrank recommend --model M --width 16 --history \"1193 661 914 3408\" -k 10");

  mtrank::cli::ItemVectorsOptions iv;
  auto* itemvec = app.add_subcommand("item-vectors",
                                     "Compute LSA item vectors from item text (TF-IDF of word uni- and bigrams, then a "
                                     "truncated SVD).");
  itemvec->add_option("--items", iv.items, "Item table (CSV/TSV with a header, gzip by .gz)")->required()->check(
      CLI::ExistingFile);
  itemvec->add_option("--id-column", iv.id_column, "Column of the item ids")->capture_default_str();
  itemvec->add_option("--text-columns", iv.text_columns, "Text columns, comma-separated (e.g. title,genres)")
      ->required()
      ->delimiter(',');
  itemvec->add_option("--dim", iv.dim, "Vector dimensions")->capture_default_str();
  itemvec->add_option("--min-df", iv.min_df, "Keep terms found in at least this many items")->capture_default_str();
  itemvec->add_flag("!--no-bigrams", iv.bigrams, "Words only, no adjacent word pairs");
  itemvec->add_option("--power-iterations", iv.power_iterations, "Randomized SVD power iterations")
      ->capture_default_str();
  itemvec->add_option("--seed", iv.seed, "Seed of the randomized SVD")->capture_default_str();
  itemvec->add_option("--out", iv.out,
                      "Output: one 'item<TAB>v1 v2 ...' line per item, or with a .npy suffix a float32 NumPy array "
                      "[items, 1 + dim] whose column 0 is the (integer) item id")
      ->required();
  itemvec->footer(
      "No pretrained text encoder ships in Debian; these vectors stand in for one: items whose text\n"
      "shares rare words get similar vectors. Example:\n"
      "  mtrank item-vectors --items ../shared/datasets/ml-1m.items.tsv.gz --text-columns title,genres \\\n"
      "    --dim 64 --out ml-1m.lsa64.tsv\n"
      "A sequential model reads them as frozen item vectors (data.item_vectors or train --item-vectors).");

  mtrank::cli::PredictOptions pr;
  auto* predict = app.add_subcommand("predict", "Score a file: one output row per input row, one column per task.");
  predict->add_option("--model", pr.model, "Model directory from 'mtrank train'")->required();
  predict->add_option("--data", pr.data, "Data file (label columns not needed)")->required();
  predict->add_option("--out", pr.out, "Output CSV file")->required();
  predict->add_option("--threads", pr.threads, "Threads (0 = all cores)");
  predict->footer(
      "Binary tasks give probabilities, regression tasks values. Featurizes exactly as training did;\n"
      "unknown categories map to the out-of-vocabulary id, missing numerics follow the feature's policy.");

  mtrank::cli::CompareOptions cmp;
  auto* compare = app.add_subcommand(
      "compare", "Train a set of models over several seeds and print the seesaw table against single-task models.");
  compare->add_option("configs", cmp.configs, "Model configs; each model is named after its file")->required()->check(
      CLI::ExistingFile);
  compare->add_option("--overlay", cmp.overlays, "Config overlaid on every model config (e.g. another task group)")
      ->check(CLI::ExistingFile);
  compare->add_option("--seeds", cmp.seeds, "Seeds to train each model with")->delimiter(',')->capture_default_str();
  compare->add_option("--out-dir", cmp.out_dir, "Where models and metrics go; existing results are reused")
      ->capture_default_str();
  compare->add_option("--baseline", cmp.baseline, "The model every other is compared with")->capture_default_str();
  compare->add_option("--train", cmp.train,
                     "Training data (overrides data.train): FILE, several files, or a quoted glob such as "
                     "'logs/day-*.csv.gz', read in turn as one data set (each file with the same header)");
  compare->add_option("--val", cmp.val, "Validation data (overrides data.val; files or a glob)");
  compare->add_option("--test", cmp.test, "Test data (overrides data.test; files or a glob)");
  compare->add_option("--threads", cmp.threads, "Threads (0 = all cores)");
  compare->add_flag("--markdown", cmp.markdown, "Print a Markdown table");
  compare->add_flag("--gbdt", cmp.gbdt,
                    "Add a gradient-boosted trees row (xgboost): one booster per task on the first config's "
                    "features, categorical columns as categories, depth and rounds tuned on the validation split");
  compare->footer(
      "Example: mtrank compare examples/census/{single_task,shared_bottom,mmoe,cgc}.toml --seeds 1,2,3\n"
      "Each cell: mean test metric over seeds (max - min) and the relative gain over the baseline.\n"
      "A task is 'up' or 'down' only when the difference of the means exceeds the larger of the two\n"
      "models' seed spreads (max - min), else '~' (within noise); with one seed no task is called either way.\n"
      "'seesaw' marks a model that is up on some tasks and down on others (Tang et al. 2020).");

  mtrank::serve::ServerOptions sv;
  std::string admin_token_file;
  std::string unknown_features = "error";
  auto* serve = app.add_subcommand("serve", "Serve a model over HTTP: POST /v1/rank ranks a candidate list.");
  serve->add_option("--model", sv.model_dir, "Model directory from 'mtrank train'")->required()->check(CLI::ExistingDirectory);
  serve->add_option("--host", sv.host, "Address to bind (loopback by default)")->capture_default_str();
  serve->add_option("--port", sv.port, "Port, 0 to 65535 (0 = any free port, printed at start); a port in use is an error")
      ->capture_default_str();
  serve->add_option("--threads", sv.threads,
                    "Rank requests scored in parallel, each on the thread that read it (1 to " +
                        std::to_string(mtrank::serve::kMaxServerThreads) + ")")
      ->capture_default_str();
  serve->add_option("--io-threads", sv.io_threads,
                    "Threads always left for accepting, reading and writing connections and for probes, on top of --threads "
                    "(an idle connection holds none)")
      ->capture_default_str();
  serve->add_option("--score", sv.ranker.score,
                    "Ranking score from task predictions: 'sum:click=1,like=0.5' or 'product:click=1,watch_time=0.3' "
                    "(default: the model config's [serve] score, else the sum of all tasks; 'sum' alone restores that)");
  serve->add_option("--chunk-size", sv.ranker.chunk_size, "Candidates per parallel scoring chunk (with --score-threads 1 the whole list is one chunk)")->capture_default_str();
  serve->add_option("--score-threads", sv.score_threads,
                    "Threads that score one request's chunks in parallel. 1 is fastest under load (requests run "
                    "in parallel on --threads); more lowers one request's latency when the server is idle")
      ->capture_default_str();
  serve->add_option("--max-candidates", sv.ranker.max_candidates, "Largest candidate list accepted")->capture_default_str();
  serve->add_option("--max-body-bytes", sv.max_body_bytes,
                    "Largest request body accepted, counted on the bytes read (chunked bodies too); larger: 413")
      ->capture_default_str();
  serve->add_option("--max-header-bytes", sv.max_header_bytes,
                    "Largest request line + headers accepted (also at most 100 header fields); larger: 431")
      ->capture_default_str();
  serve->add_option("--max-connections", sv.max_connections,
                    "Open connections served; beyond, a few more may still GET /healthz or /readyz, others get 503")
      ->capture_default_str();
  serve->add_option("--max-queue", sv.max_queue, "Rank requests waiting for a scoring slot; beyond: 503")->capture_default_str();
  serve->add_option("--request-timeout", sv.request_timeout_s,
                    "Seconds to read one whole request (headers and body, however slowly it trickles), and to write "
                    "its response; then the connection is closed")
      ->capture_default_str();
  serve->add_option("--keep-alive-timeout", sv.keep_alive_timeout_s,
                    "Seconds an idle connection is kept open waiting for its next request")
      ->capture_default_str();
  serve->add_option("--unknown-features", unknown_features, "A feature the model does not read: error or ignore")
      ->check(CLI::IsMember({"error", "ignore"}))
      ->capture_default_str();
  serve->add_option("--admin-token-file", admin_token_file,
                    "File holding the token that POST /v1/reload requires (Authorization: Bearer TOKEN; first line, "
                    "trailing spaces and CR/LF stripped); without it admin endpoints are off")
      ->check(CLI::ExistingFile);
  serve->add_option("--models-root", sv.models_root,
                    "POST /v1/reload loads only model directories inside this one (symlinks and '..' resolved first; "
                    "relative model_dir values are taken from here). Default: the parent directory of --model")
      ->check(CLI::ExistingDirectory);
  double state_max_gib = 64;
  serve->add_option("--retrieval", sv.retrieval_dir,
                    "Sequential model directory (mtrank train with [sequential]): enables POST /v1/recommend, which "
                    "retrieves candidates with it and ranks them with --model")
      ->check(CLI::ExistingDirectory);
  serve->add_option("--catalog", sv.catalog_file,
                    "Item catalog for --retrieval: one row per item (CSV/TSV, gzip too) with the item id and the ranker's "
                    "item columns (e.g. genres, year), joined to every retrieved item; the file the ranker was trained with")
      ->check(CLI::ExistingFile);
  serve->add_option("--catalog-item-column", sv.catalog_item_column, "The catalog's item id column")->capture_default_str();
  serve->add_option("--state-dir", sv.state_dir,
                    "Directory of the users' live state (LMDB; created if missing): enables POST /v1/events and "
                    "{\"user\": U} in /v1/recommend. Every acknowledged event is on disk (synced) before the response");
  serve->add_option("--state-max-gib", state_max_gib, "Largest size the state store may grow to (address space, not memory)")
      ->capture_default_str();
  serve->add_option("--index", sv.retriever.index,
                    "Retrieval index: exact, funnel (Matryoshka), hnsw or ivf (default: the retrieval model config's "
                    "[serve] index, else exact)")
      ->check(CLI::IsMember({"exact", "funnel", "hnsw", "ivf"}));
  serve->add_option("--funnel-widths", sv.retriever.index_options.funnel_widths,
                    "Funnel stages' widths, increasing to the model's full width (default: the model config's [serve] "
                    "funnel_widths, else its smallest and full width)")
      ->delimiter(',');
  serve->add_option("--funnel-keep", sv.retriever.index_options.funnel_keep,
                    "Items each funnel stage but the last keeps (default: the model config's [serve] funnel_keep, else 1000)")
      ->delimiter(',');
  serve->add_option("--request-widths", sv.retriever.widths,
                    "Retrieval widths a request may ask for (\"width\"), each searched exactly at its prefix (a copy of "
                    "items x width floats); the full width uses --index. Default: every width of the retrieval model")
      ->delimiter(',');
  serve->add_option("--latency-budget-ms", sv.retriever.latency_budget_ms,
                    "Time a one-query search at each width at start and retrieve at the widest within this budget by "
                    "default (p99; the narrowest if none fits). 0: the full width")
      ->capture_default_str();
  serve->add_option("--max-retrieve", sv.recommender.max_retrieve, "Largest 'retrieve' (and 'k') of a recommend request")
      ->capture_default_str();
  serve->add_option("--history-window", sv.recommender.history_window,
                    "Recent items kept per user (left out of their recommendations; after a retrieval model change, "
                    "the user's state restarts from them)")
      ->capture_default_str();
  serve->footer(
      "POST /v1/rank  {\"context\": {...}, \"candidates\": [{...}, ...], \"top_k\": K}\n"
      "  features by input column name, raw values as in the training files; a candidate's value wins over the context's.\n"
      "POST /v1/recommend {\"user\": U | \"history\": [ITEM, ...], \"context\": {...}, \"k\": 10, \"retrieve\": 200,\n"
      "  \"width\": W}\n"
      "  (with --retrieval) retrieve, join the catalog, rank: {\"results\": [{\"item\", \"score\", \"retrieval_score\",\n"
      "  \"tasks\"}, ...]} by score; a user with no events: 404.\n"
      "POST /v1/events {\"user\": U, \"item\": ITEM} (with --state-dir) advances the user's state in one step.\n"
      "GET /healthz, /readyz, /metrics (Prometheus): answered on the network threads, never queued behind scoring.\n"
      "POST /v1/reload {\"model_dir\": DIR, \"retrieval_dir\": DIR, \"allow_schema_change\": false} or SIGHUP: load\n"
      "  (the ranker, and the retrieval model with the catalog), check, then swap them together; a model\n"
      "  that fails keeps the old one serving (422, details in the log), DIR outside --models-root is refused (403),\n"
      "  a model reading other request fields is refused (409) unless allow_schema_change is true.\n"
      "Statuses: 400 bad request, 401 bad token, 404/405 unknown endpoint or method, 413 body too large,\n"
      "  415 compressed body (Content-Encoding other than identity: send it uncompressed), 431 headers too large,\n"
      "  500 internal error (generic body, details in the log), 503 busy or too many connections (Retry-After: 1).\n"
      "A POST without Content-Length or chunked encoding has an empty body. SIGTERM finishes requests in flight, then\n"
      "exits 0. Exit codes: 2 bad option or address (port in use), 3 bad catalog or state store, 4 bad model,\n"
      "1 other errors (a thread cannot start).");

  mtrank::cli::ReportOptions rp;
  auto* report = app.add_subcommand(
      "report", "Write one self-contained HTML report (learning curves, metrics, calibration, experts, seesaw).");
  report->add_option("runs", rp.runs,
                     "Runs: metrics JSON files (train --metrics-out), model directories, or compare --out-dir "
                     "folders; LABEL=PATH names a run's model")
      ->required();
  report->add_option("--out", rp.out, "HTML file to write")->capture_default_str();
  report->add_option("--title", rp.title, "Page title")->capture_default_str();
  report->add_option("--baseline", rp.baseline, "The label the seesaw table compares every model with")
      ->capture_default_str();
  report->footer(
      "Runs that share a label are seeds of one model: tables show their mean and spread, and plots\n"
      "draw one line per seed. Without LABEL= a run is labelled by its model family; in a compare folder\n"
      "by its model's folder name. With two or more models the report has the seesaw table against\n"
      "--baseline. The page is inline SVG and CSS: no network, no JavaScript. Examples:\n"
      "  mtrank report model --out report.html\n"
      "  mtrank report mtrank-compare --out compare.html\n"
      "  mtrank report single_task=st.json mmoe=a.json mmoe=b.json --out report.html");

  mtrank::cli::DoctorOptions dr;
  auto* doctor = app.add_subcommand("doctor", "Check the BLAS in use and measure sgemm GFLOP/s on 1 and all threads.");
  doctor->add_option("--size", dr.size, "Matrix size n for the n x n x n sgemm")->capture_default_str();
  doctor->add_option("--seconds", dr.seconds, "Measuring time per thread count")->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*quickstart) return mtrank::cli::run_quickstart(qs);
    if (*synth_mmoe) {
      mtrank::data::write_mmoe_synthetic(mm, mm_out);
      std::printf("wrote %lld rows to %s\n", static_cast<long long>(mm.rows), mm_out.c_str());
      return 0;
    }
    if (*synth_ranking) {
      mtrank::data::write_ranking_synthetic(rk, rk_out);
      std::printf("wrote %lld rows to %s\n", static_cast<long long>(rk.rows), rk_out.c_str());
      return 0;
    }
    if (*simulate) {
      sim.click_model = mtrank::data::parse_click_model(click_model);
      const mtrank::data::SimulateSummary sum = mtrank::data::simulate_impressions(sim);
      std::printf("simulated %lld users, %lld items (%lld ratings; factorization train RMSE %.3f)\n",
                  static_cast<long long>(sum.users), static_cast<long long>(sum.items),
                  static_cast<long long>(sum.ratings), sum.mf_train_rmse);
      const char* split[3] = {"train", "val", "test"};
      for (int k = 0; k < 3; ++k)
        std::printf("  %s/%s.csv: %lld impressions, click rate %.4f\n", sim.out_dir.c_str(), split[k],
                    static_cast<long long>(sum.impressions[k]),
                    sum.impressions[k] ? static_cast<double>(sum.clicks[k]) / static_cast<double>(sum.impressions[k]) : 0.0);
      std::printf("  grades 0..4: %lld %lld %lld %lld %lld\n  click rate by position:",
                  static_cast<long long>(sum.grade_counts[0]), static_cast<long long>(sum.grade_counts[1]),
                  static_cast<long long>(sum.grade_counts[2]), static_cast<long long>(sum.grade_counts[3]),
                  static_cast<long long>(sum.grade_counts[4]));
      for (double c : sum.click_rate_by_position) std::printf(" %.3f", c);
      std::printf("\n");
      return 0;
    }
    if (*train) {
      // The workers run this command line without --nproc-per-node.
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--nproc-per-node") ++i;
        else if (a.rfind("--nproc-per-node=", 0) != 0) tr.worker_arguments.push_back(a);
      }
      return mtrank::cli::run_train(tr);
    }
    if (*evalc) return mtrank::cli::run_eval(ev);
    if (*predict) return mtrank::cli::run_predict(pr);
    if (*exportc) return mtrank::cli::run_export(ex);
    if (*itemvec) return mtrank::cli::run_item_vectors(iv);
    if (*recommendc) return mtrank::cli::run_recommend(rc);
    if (*doctor) return mtrank::cli::run_doctor(dr);
    if (*report) return mtrank::cli::run_report(rp);
    if (*compare) return mtrank::cli::run_compare(cmp);
    if (*serve) {
      sv.ranker.ignore_unknown_features = unknown_features == "ignore";
      if (sv.port < 0 || sv.port > 65535)
        throw mtrank::ConfigError("--port " + std::to_string(sv.port) + ": must be 0 to 65535 (0 = any free port)");
      if (sv.threads < 1 || sv.threads > mtrank::serve::kMaxServerThreads)
        throw mtrank::ConfigError("--threads " + std::to_string(sv.threads) + ": must be 1 to " +
                                  std::to_string(mtrank::serve::kMaxServerThreads));
      if (!admin_token_file.empty()) {
        std::ifstream in(admin_token_file);
        std::getline(in, sv.admin_token);
        // An editor or Windows may end the line with CR or spaces: not part of the token.
        while (!sv.admin_token.empty() && std::isspace(static_cast<unsigned char>(sv.admin_token.back())))
          sv.admin_token.pop_back();
        if (sv.admin_token.empty()) throw mtrank::ConfigError(admin_token_file + ": the admin token file is empty");
      }
      if (!(state_max_gib > 0 && state_max_gib <= 1 << 20))
        throw mtrank::ConfigError("--state-max-gib: must be above 0 (and at most 1048576)");
      sv.state_max_bytes = static_cast<std::size_t>(state_max_gib * (1 << 30));
      mtrank::configure_threads(sv.score_threads);
      return mtrank::serve::run_server(sv);
    }
  } catch (const mtrank::ConfigError& e) {
    std::fprintf(stderr, "config error: %s\n", e.what());
    return 2;
  } catch (const mtrank::DataError& e) {
    std::fprintf(stderr, "data error: %s\n", e.what());
    return 3;
  } catch (const mtrank::ModelError& e) {
    std::fprintf(stderr, "model error: %s\n", e.what());
    return 4;
  } catch (const mtrank::TrainingError& e) {  // divergence, NaN predictions: exit 1, in mtrank's words
    std::fprintf(stderr, "training error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
