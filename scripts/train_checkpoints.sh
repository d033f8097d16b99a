#!/usr/bin/env bash
# Regenerate the shipped checkpoints (pi07_bringup/checkpoints/<profile>/{vla,high_level,world_model}) from
# expert demonstrations: collect bags -> convert -> train the three models, per embodiment, fixed seeds.
#
#   bash scripts/train_checkpoints.sh                 # both embodiments
#   EMBODIMENTS=gantry MODELS="vla high_level" bash scripts/train_checkpoints.sh
#   MODELS= bash scripts/train_checkpoints.sh          # only collect the bags and convert the datasets
#   VLA_STEPS=40 HL_STEPS=20 WM_VAE_STEPS=20 WM_STEPS=20 bash scripts/train_checkpoints.sh   # a quick smoke run
#
# Bags are collected only where missing (collect skips existing ones); the datasets are rebuilt incrementally.
# Everything runs on CPU; on the shared 2-core machine the default step counts take about 95-100 min for the arm
# (85 of them the VLA: 31 for its first stage, 9 for the fine-tune with subgoals and memory, 9.5 for the one with
# training-time RTC, 23 for the keyframe fine-tune on both task families, 11 for its goal head alone:
# KEYFRAME=finetune) and about 100 for the gantry (its VLA: 19 min of goal pretraining and 45 of one stage on both
# task families with a memory keyframe, 11 of the RTC fine-tune, then 11 of its goal head alone: KEYFRAME=1).
# GOAL_PRETRAIN_STEPS=2000 VLA_STEPS=1600 HL_STEPS=2500 EXTRAS_PER_BATCH=1 EXTRAS_FINETUNE_STEPS=0 takes 27 min for
# the gantry, but its VLA succeeds far less often (docs/data.md, session 8); so does
# ONE_STAGE=1 GOAL_PRETRAIN_STEPS=3000 VLA_STEPS=1100 HL_STEPS=2500 (35 min, 15 of 40 against 32; session 15).
# Logs and loss curves: runs/<embodiment>/<model>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

EMBODIMENTS=${EMBODIMENTS:-"arm7 gantry"}
SEED=${SEED:-0}
MODELS=${MODELS-"vla high_level world_model"}   # MODELS="" (set, empty): collect and convert only
# Per-embodiment settings: NAME_<embodiment>, else NAME, else the default below. The defaults regenerate the
# shipped VLAs (docs/data.md has every recipe tried and its closed-loop numbers).
#   VLA_STEPS        VLA training steps
#   EXPERT_EPISODES  clean expert demonstrations of ordered_place (seeds 0..N-1)
#   FLOW_SAMPLES     noise/time draws of the flow loss per backbone pass
#   GOAL_PRETRAIN_STEPS  steps of image-encoder pretraining on the goal state (where each subtask ends) before
#                    the VLA's own steps (0: none)
#   IMAGE_SHIFT      random-shift augmentation of the VLA's images, px (a fixed scene camera maps pixels to table
#                    positions: a shift hides where the blocks are, docs/data.md)
#   GOAL_CONDITIONING  1: the action expert follows the image encoder's goal estimate (--goal-conditioning);
#                    0: the expert reads the prefix only
#   GOAL_HEAD        what that goal head reads: displacement (--vision-goal-displacement: the displacement to the
#                    goal from the images alone, so it cannot follow the robot; the gantry's axes are seen in the
#                    image) or state (the images and the joint state: a 7-joint arm's joint displacement needs
#                    its joint configuration, which the images show poorly)
#   DART_EPISODES    ordered_place demonstrations of the `dart` expert variant (seeds 3000..): clean commands,
#                    executed with a smooth offset of a few cm, so the labels lead back to the path from off it
#                    (DART; docs/sim.md); the failed ones are left out. They go into a second dataset,
#                    $DATASETS/<e>_dart, for the VLA only
#   DART_VARIANT     the expert variant of those demonstrations: dart (3 cm offset) or dart_wide (5 cm)
#   EXTRAS_PER_BATCH 1: subgoal / memory coins per batch, not per sample (--extras-per-batch: cheaper steps)
#   DAGGER_EPISODES  takeover episodes of a DAgger round after the first training (0: no round), then the VLA
#                    is fine-tuned DAGGER_STEPS steps at DAGGER_LR on the grown dataset
#   EXTRAS_FINETUNE_STEPS  then this many steps at EXTRAS_FINETUNE_LR with subgoal images and memory frames in
#                    half of the batches each (0: none). The first stage gives them to 10 % / 5 % of the samples,
#                    so the full stack's prompt (metadata + subgoals + memory) was rarely seen: without ROS the
#                    gantry VLA finished 0 of 40 episodes with it against 12 of 40 without (docs/data.md, session 9)
#   RTC_FINETUNE_STEPS  then this many steps at EXTRAS_FINETUNE_LR, the same prompt mix, with training-time RTC
#                    (--rtc-train-prob $RTC_TRAIN_PROB --rtc-max-delay $RTC_MAX_DELAY: half the samples get the
#                    first 1-6 rows of their chunk as given, the rows played while a chunk is computed, off course
#                    by a heading error of std $RTC_PREFIX_NOISE at their end: --rtc-prefix-noise), so the action
#                    expert joins chunks by conditioning on them, at the cost of a plain chunk (docs/models.md,
#                    docs/data.md session 14; 0: none)
#   RESTORE_EPISODES restore_layout demonstrations (seeds 2000..); the VLA gets them all, the high-level decoder
#                    and the world model the first 30 (the data they were shipped with)
#   KEYFRAME         1: one VLA stage on both task families with a memory keyframe (--memory-keyframe: the
#                    episode's first frame stays in memory and the goal head reads it), the fine-tunes' prompt
#                    mix (--subgoal-prob 0.3 --memory-prob 0.7) and training-time RTC, then the RTC fine-tune
#                    (RTC_FINETUNE_STEPS, the same mix; no subgoal/memory fine-tune, no DAgger); then
#                    GOAL_HEAD_STEPS steps of the goal head alone (--goal-head-only) with a keyframe encoder of
#                    its own and hindsight "put it back" samples (--hindsight-return-prob 0.3
#                    --hindsight-return-dims $HINDSIGHT_DIMS), docs/data.md session 17;
#                    finetune: the VLA's usual stages on ordered_place, then KEYFRAME_FINETUNE_STEPS steps on both
#                    task families with the memory keyframe (its goal head widened for it), the same mix and
#                    training-time RTC, then the goal head's own stage as above (the arm, docs/data.md session 18)
#   KEYFRAME_FINETUNE_STEPS  that fine-tune's steps (KEYFRAME=finetune)
#   SUBGOAL_GOAL_HEAD_STEPS  after the goal head's stage (KEYFRAME 1 or finetune), this many steps of a variant whose
#                    goal head also reads the subgoal images (--subgoal-goal-head: an image encoder of their own),
#                    again the goal head alone, exported to $RUNS/<e>/vla_subgoal_goal_head_export, not shipped (its
#                    13 MB would take the checkpoints past 40 MB); 0: none. 2500 is docs/evaluation.md session 21's
#                    run (true subgoal images then raise the gantry's put-back without memory from 3 to 10 of 40).
#                    Use it with `python -m pi07_bringup.evaluate --checkpoint action_expert=<that export>`
#   HINDSIGHT_DIMS   the state dimensions a hindsight "put it back" goal supervises: those a put-back ends at as a
#                    pick does (the gantry's x and y; the arm's joints but the shoulder and wrist pitch, which
#                    carry the height); "none": no hindsight samples
# The values given in the environment, read once: the loop below assigns these names per embodiment, and a
# later embodiment must not take an earlier one's value for its own default.
declare -A GIVEN=()
for name in VLA_STEPS EXPERT_EPISODES FLOW_SAMPLES GOAL_PRETRAIN_STEPS IMAGE_SHIFT GOAL_CONDITIONING GOAL_HEAD \
            DAGGER_EPISODES DART_EPISODES DART_VARIANT EXTRAS_PER_BATCH EXTRAS_FINETUNE_STEPS RTC_FINETUNE_STEPS \
            RESTORE_EPISODES KEYFRAME KEYFRAME_FINETUNE_STEPS GOAL_HEAD_STEPS HINDSIGHT_DIMS TRANSFER_FROM \
            SUBGOAL_GOAL_HEAD_STEPS; do
  if [[ -n "${!name:-}" ]]; then GIVEN[$name]=${!name}; fi
done
setting() { local v="${1}_${2}"; if [[ -n "${!v:-}" ]]; then echo "${!v}"; elif [[ -n "${GIVEN[$1]:-}" ]]; then echo "${GIVEN[$1]}"; else echo "$3"; fi; }
declare -A DEFAULT_VLA_STEPS=([arm7]=1500 [gantry]=2600)
declare -A DEFAULT_EXPERT_EPISODES=([arm7]=400 [gantry]=400)
declare -A DEFAULT_FLOW_SAMPLES=([arm7]=4 [gantry]=4)
declare -A DEFAULT_GOAL_PRETRAIN_STEPS=([arm7]=4000 [gantry]=4000)
declare -A DEFAULT_IMAGE_SHIFT=([arm7]=0 [gantry]=0)
declare -A DEFAULT_GOAL_CONDITIONING=([arm7]=1 [gantry]=1)
declare -A DEFAULT_GOAL_HEAD=([arm7]=displacement [gantry]=displacement)
declare -A DEFAULT_DAGGER_EPISODES=([arm7]=0 [gantry]=0)
declare -A DEFAULT_DART_EPISODES=([arm7]=400 [gantry]=200)
declare -A DEFAULT_DART_VARIANT=([arm7]=dart_wide [gantry]=dart)
declare -A DEFAULT_EXTRAS_PER_BATCH=([arm7]=0 [gantry]=0)
declare -A DEFAULT_EXTRAS_FINETUNE_STEPS=([arm7]=600 [gantry]=600)
declare -A DEFAULT_RTC_FINETUNE_STEPS=([arm7]=600 [gantry]=600)
declare -A DEFAULT_RESTORE_EPISODES=([arm7]=200 [gantry]=200)
declare -A DEFAULT_KEYFRAME=([arm7]=finetune [gantry]=1)
declare -A DEFAULT_KEYFRAME_FINETUNE_STEPS=([arm7]=1200 [gantry]=0)
declare -A DEFAULT_GOAL_HEAD_STEPS=([arm7]=3000 [gantry]=3000)
declare -A DEFAULT_HINDSIGHT_DIMS=([arm7]="0 2 3 4 6" [gantry]="0 1")   # a place ends lower than a pick
EXTRAS_FINETUNE_LR=${EXTRAS_FINETUNE_LR:-2e-4}
RTC_TRAIN_PROB=${RTC_TRAIN_PROB:-0.5}
RTC_MAX_DELAY=${RTC_MAX_DELAY:-6}
RTC_PREFIX_NOISE=${RTC_PREFIX_NOISE:-0.6}
# ONE_STAGE=1: the VLA's first stage already trains with the fine-tunes' prompt mix and training-time RTC, and the
# two fine-tune stages are skipped (the 30-minute recipe, docs/data.md session 15)
ONE_STAGE=${ONE_STAGE:-0}
# TRANSFER_FROM=<VLA checkpoint> (or TRANSFER_FROM_<embodiment>): the VLA's first stage starts from another
# embodiment's VLA (`train vla --transfer-from`: its image encoder, backbone, expert layers and text tokenizer; the
# state/action layers fresh), as a new robot is fine-tuned from a base model. With ONE_STAGE=1
# GOAL_PRETRAIN_STEPS=1000 VLA_STEPS=900 HL_STEPS=2500 KEYFRAME=0 RESTORE_EPISODES=30 from the shipped gantry VLA,
# the arm trains in under 30 min and finishes 30 of 40 ordered tasks (docs/data.md, session 18)
DAGGER_STEPS=${DAGGER_STEPS:-500}
DAGGER_LR=${DAGGER_LR:-2e-4}
HL_STEPS=${HL_STEPS:-4000}
WM_VAE_STEPS=${WM_VAE_STEPS:-150}
WM_STEPS=${WM_STEPS:-250}
# The shipped world models' text encoder: 24 tokens, a long prompt cut at its end. That cuts the subtask out of
# every prompt of the sim's tasks, so they do not read it (docs/world_model.md, session 26); WM_TEXT_ARGS=
# (empty) trains one on the presets' 48 tokens, which reads it.
read -r -a WM_TEXT_ARGS <<< "${WM_TEXT_ARGS-"--text-tokens 24 --cut-prompt-tail"}"
BAGS=${BAGS:-data/bags}
DATASETS=${DATASETS:-data/datasets}
RUNS=${RUNS:-runs}
CHECKPOINTS=${CHECKPOINTS:-pi07_bringup/checkpoints}   # where the three models of each profile go
NICE=${NICE:-"nice -n 5"}
# Embodiments whose data also gets 60 `recover` episodes (DART-style pushes). On the gantry they made closed-loop
# progress worse (0.0 vs 0.175 mean progress over 10 seeds, docs/data.md); none by default.
WITH_RECOVER=${WITH_RECOVER:-""}

want() { [[ " $MODELS " == *" $1 "* ]]; }

for E in $EMBODIMENTS; do
  P=sim_$E
  STEPS=$(setting VLA_STEPS "$E" "${DEFAULT_VLA_STEPS[$E]:-1500}")
  EXPERT_EPISODES=$(setting EXPERT_EPISODES "$E" "${DEFAULT_EXPERT_EPISODES[$E]:-80}")
  FLOW_SAMPLES=$(setting FLOW_SAMPLES "$E" "${DEFAULT_FLOW_SAMPLES[$E]:-1}")
  GOAL_PRETRAIN_STEPS=$(setting GOAL_PRETRAIN_STEPS "$E" "${DEFAULT_GOAL_PRETRAIN_STEPS[$E]:-4000}")
  IMAGE_SHIFT=$(setting IMAGE_SHIFT "$E" "${DEFAULT_IMAGE_SHIFT[$E]:-0}")
  GOAL_CONDITIONING=$(setting GOAL_CONDITIONING "$E" "${DEFAULT_GOAL_CONDITIONING[$E]:-1}")
  GOAL_HEAD=$(setting GOAL_HEAD "$E" "${DEFAULT_GOAL_HEAD[$E]:-displacement}")
  [[ "$GOAL_HEAD" == displacement || "$GOAL_HEAD" == state ]] || { echo "GOAL_HEAD: displacement or state, got $GOAL_HEAD" >&2; exit 2; }
  DAGGER_EPISODES=$(setting DAGGER_EPISODES "$E" "${DEFAULT_DAGGER_EPISODES[$E]:-0}")
  DART_EPISODES=$(setting DART_EPISODES "$E" "${DEFAULT_DART_EPISODES[$E]:-0}")
  DART_VARIANT=$(setting DART_VARIANT "$E" "${DEFAULT_DART_VARIANT[$E]:-dart}")
  EXTRAS_PER_BATCH=$(setting EXTRAS_PER_BATCH "$E" "${DEFAULT_EXTRAS_PER_BATCH[$E]:-0}")
  EXTRAS_FINETUNE_STEPS=$(setting EXTRAS_FINETUNE_STEPS "$E" "${DEFAULT_EXTRAS_FINETUNE_STEPS[$E]:-0}")
  RTC_FINETUNE_STEPS=$(setting RTC_FINETUNE_STEPS "$E" "${DEFAULT_RTC_FINETUNE_STEPS[$E]:-0}")
  RESTORE_EPISODES=$(setting RESTORE_EPISODES "$E" "${DEFAULT_RESTORE_EPISODES[$E]:-30}")
  KEYFRAME=$(setting KEYFRAME "$E" "${DEFAULT_KEYFRAME[$E]:-0}")
  [[ "$KEYFRAME" == 0 || "$KEYFRAME" == 1 || "$KEYFRAME" == finetune ]] || { echo "KEYFRAME: 0, 1 or finetune, got $KEYFRAME" >&2; exit 2; }
  KEYFRAME_FINETUNE_STEPS=$(setting KEYFRAME_FINETUNE_STEPS "$E" "${DEFAULT_KEYFRAME_FINETUNE_STEPS[$E]:-1200}")
  GOAL_HEAD_STEPS=$(setting GOAL_HEAD_STEPS "$E" "${DEFAULT_GOAL_HEAD_STEPS[$E]:-3000}")
  HINDSIGHT_DIMS=$(setting HINDSIGHT_DIMS "$E" "${DEFAULT_HINDSIGHT_DIMS[$E]:-}")
  SUBGOAL_GOAL_HEAD_STEPS=$(setting SUBGOAL_GOAL_HEAD_STEPS "$E" 0)
  if [[ "$SUBGOAL_GOAL_HEAD_STEPS" -gt 0 && "$KEYFRAME" == 0 ]]; then
    echo "SUBGOAL_GOAL_HEAD_STEPS follows the goal head's own stage: it needs KEYFRAME=1 or finetune" >&2; exit 2
  fi
  CKPT=$CHECKPOINTS/$P
  # 1. demonstrations (seeds: expert 0..399, variants 1000.., restore_layout 2000..; evaluation uses >= 10000)
  python -m pi07_sim.collect -o "$BAGS/$E/expert" --embodiments "$E" --families ordered_place \
      --variants expert --episodes "$EXPERT_EPISODES" --seed 0 || echo "collect: some expert episodes failed (kept anyway)"
  python -m pi07_sim.collect -o "$BAGS/$E/variants" --embodiments "$E" --families ordered_place \
      --variants fast slow noisy mistake --episodes 15 --seed 1000 || echo "collect: some variant episodes failed"
  python -m pi07_sim.collect -o "$BAGS/$E/restore" --embodiments "$E" --families restore_layout \
      --variants expert --episodes "$RESTORE_EPISODES" --seed 2000 || echo "collect: some restore episodes failed"
  # the first EXPERT_EPISODES expert bags (the folder may hold more), then the other folders in alphabetical
  # order, as `convert $BAGS/$E` lists them (the train/val split follows the order)
  SOURCES=()
  for ((i = 0; i < EXPERT_EPISODES; i++)); do
    SOURCES+=("$(printf '%s/%s/expert/%s_ordered_place_expert_s%04d' "$BAGS" "$E" "$E" "$i")")
  done
  if [[ " $WITH_RECOVER " == *" $E "* ]]; then
    # DART-style recovery demonstrations: the expert's setpoint is pushed off course now and then, and corrected
    python -m pi07_sim.collect -o "$BAGS/$E/recover" --embodiments "$E" --families ordered_place \
        --variants recover --episodes 60 --seed 3000 || echo "collect: some recover episodes failed"
    SOURCES+=("$BAGS/$E/recover")
  fi
  # the VLA's sources: the same, with the dart demonstrations after the expert's (its dataset is a second one, so
  # the high-level decoder and the world model keep the data they were trained and measured on)
  VLA_SOURCES=("${SOURCES[@]}")
  VLA_DATASET=$DATASETS/$E
  CONVERT_ARGS=()
  if [[ "$DART_EPISODES" -gt 0 ]]; then
    python -m pi07_sim.collect -o "$BAGS/$E/$DART_VARIANT" --embodiments "$E" --families ordered_place \
        --variants "$DART_VARIANT" --episodes "$DART_EPISODES" --seed 3000 \
        || echo "collect: some $DART_VARIANT episodes failed (left out)"
    for ((i = 0; i < DART_EPISODES; i++)); do
      VLA_SOURCES+=("$(printf '%s/%s/%s/%s_ordered_place_%s_s%04d' "$BAGS" "$E" "$DART_VARIANT" "$E" \
                    "$DART_VARIANT" $((3000 + i)))")
    done
    VLA_DATASET=$DATASETS/${E}_dart
    CONVERT_ARGS+=(--only-successful)   # every other source succeeds; a failed dart episode ended stuck
  fi
  RESTORE=()
  for ((i = 0; i < RESTORE_EPISODES; i++)); do
    RESTORE+=("$(printf '%s/%s/restore/%s_restore_layout_expert_s%04d' "$BAGS" "$E" "$E" $((2000 + i)))")
  done
  SOURCES+=("${RESTORE[@]:0:30}" "$BAGS/$E/variants")
  VLA_SOURCES+=("${RESTORE[@]}")
  DAGGER_SOURCES=("${VLA_SOURCES[@]}" "$BAGS/$E/takeover" "$BAGS/$E/variants")
  VLA_SOURCES+=("$BAGS/$E/variants")
  # 2. bags -> datasets (10 % of the episodes held out for validation, split seed 0)
  python -m pi07_policy.data.convert "${SOURCES[@]}" -o "$DATASETS/$E" --profile "$P" --seed 0
  if [[ "$VLA_DATASET" != "$DATASETS/$E" ]]; then
    python -m pi07_policy.data.convert "${VLA_SOURCES[@]}" -o "$VLA_DATASET" --profile "$P" --seed 0 \
        "${CONVERT_ARGS[@]}"
  fi
  # 3. the VLA: tiny_conv preset (conv image encoder with FiLM + keypoints), 64 px, chunks of 10 steps (1 s),
  #    joint/axis actions relative to the state, on the ordered-place episodes (expert, variants, and recover
  #    where collected). Flow + FAST without Knowledge Insulation (--no-ki: Knowledge Insulation protects a
  #    pretrained VLM backbone; from scratch it slows learning, docs/data.md).
  #    The steps inside pauses (the closed gripper settling before the lift) are left out (--idle-tolerance 2e-3):
  #    trained on them, a policy that re-plans every step or two, as the real-time stack does, stalls there.
  #    No random image shift, and the expert follows the image encoder's goal estimate (GOAL_CONDITIONING=1).
  #    With DAGGER_EPISODES > 0, one DAgger round: the policy drives DAGGER_EPISODES tasks for 1-16 s each, the scripted expert takes
  #    over and finishes (only its part is recorded), and the policy is fine-tuned on the grown dataset.
  if want vla; then
    VLA_ARGS=(--profile "$P" --config tiny_conv --image-size 64 --horizon 10 --batch-size 32 --subgoal-prob 0.1
              --memory-prob 0.05 --image-shift "$IMAGE_SHIFT" --include ordered_place --workers 1 --threads 2
              --no-ki --flow-samples "$FLOW_SAMPLES" --seed "$SEED" --goal-weight 1 --keypoint-stride 4
              --film-source subtask --idle-tolerance 2e-3)
    [[ "$GOAL_CONDITIONING" == 1 ]] && VLA_ARGS+=(--goal-conditioning)
    [[ "$GOAL_HEAD" == displacement ]] && VLA_ARGS+=(--vision-goal-displacement)
    [[ "$EXTRAS_PER_BATCH" == 1 ]] && VLA_ARGS+=(--extras-per-batch)
    EXTRAS_MIX=(--subgoal-prob 0.5 --memory-prob 0.5 --extras-per-batch)
    RTC_ARGS=(--rtc-train-prob "$RTC_TRAIN_PROB" --rtc-max-delay "$RTC_MAX_DELAY" --rtc-prefix-noise "$RTC_PREFIX_NOISE")
    FIRST_STAGE_ARGS=()
    if [[ "$ONE_STAGE" == 1 ]]; then
      # the fine-tunes' prompt mix and training-time RTC from the first step, no fine-tune stages
      FIRST_STAGE_ARGS=("${EXTRAS_MIX[@]}" "${RTC_ARGS[@]}")
      EXTRAS_FINETUNE_STEPS=0; RTC_FINETUNE_STEPS=0
    fi
    if [[ "$KEYFRAME" == 1 ]]; then
      # both task families, memory (with the first frame kept) in 70 % of the batches, training-time RTC; the goal
      # head's own stage follows (below)
      VLA_ARGS+=(--include ordered_place restore_layout --memory-keyframe)
      FIRST_STAGE_ARGS=(--subgoal-prob 0.3 --memory-prob 0.7 --extras-per-batch "${RTC_ARGS[@]}")
      EXTRAS_FINETUNE_STEPS=0; DAGGER_EPISODES=0
      EXTRAS_MIX=(--subgoal-prob 0.3 --memory-prob 0.7 --extras-per-batch)   # the RTC fine-tune's mix too
    fi
    TRANSFER=$(setting TRANSFER_FROM "$E" "")
    [[ -n "$TRANSFER" ]] && FIRST_STAGE_ARGS+=(--transfer-from "$TRANSFER")
    # each stage exports where the next one starts; the last one exports the shipped checkpoint
    LATEST=$RUNS/$E/vla_round0_export
    [[ "$DAGGER_EPISODES" -gt 0 || "$EXTRAS_FINETUNE_STEPS" -gt 0 || "$RTC_FINETUNE_STEPS" -gt 0 \
       || "$KEYFRAME" != 0 ]] || LATEST=$CKPT/vla
    $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" --out "$RUNS/$E/vla" \
        --export "$LATEST" --steps "$STEPS" --lr 5e-4 --goal-pretrain-steps "$GOAL_PRETRAIN_STEPS" \
        "${FIRST_STAGE_ARGS[@]}"
    if [[ "$DAGGER_EPISODES" -gt 0 ]]; then
      python -m pi07_policy.data.dagger --checkpoint "$LATEST" --embodiment "$E" -o "$BAGS/$E/takeover" \
          --episodes "$DAGGER_EPISODES" --seed 20000
      python -m pi07_policy.data.convert "${DAGGER_SOURCES[@]}" -o "$DATASETS/${E}_dagger" \
          --profile "$P" --seed 0 "${CONVERT_ARGS[@]}"
      NEXT=$CKPT/vla
      [[ "$EXTRAS_FINETUNE_STEPS" -gt 0 || "$RTC_FINETUNE_STEPS" -gt 0 || "$KEYFRAME" != 0 ]] \
          && NEXT=$RUNS/$E/vla_dagger_export
      $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$DATASETS/${E}_dagger" \
          --out "$RUNS/$E/vla_dagger" --export "$NEXT" --init-from "$LATEST" --steps "$DAGGER_STEPS" \
          --lr "$DAGGER_LR" --flow-samples 4
      LATEST=$NEXT
    fi
    if [[ "$EXTRAS_FINETUNE_STEPS" -gt 0 ]]; then
      NEXT=$CKPT/vla
      [[ "$RTC_FINETUNE_STEPS" -gt 0 || "$KEYFRAME" != 0 ]] && NEXT=$RUNS/$E/vla_extras_export
      $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" \
          --out "$RUNS/$E/vla_extras" --export "$NEXT" --init-from "$LATEST" --steps "$EXTRAS_FINETUNE_STEPS" \
          --lr "$EXTRAS_FINETUNE_LR" "${EXTRAS_MIX[@]}"
      LATEST=$NEXT
    fi
    if [[ "$RTC_FINETUNE_STEPS" -gt 0 ]]; then
      NEXT=$CKPT/vla
      [[ "$KEYFRAME" != 0 ]] && NEXT=$RUNS/$E/vla_rtc_export
      $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" \
          --out "$RUNS/$E/vla_rtc" --export "$NEXT" --init-from "$LATEST" --steps "$RTC_FINETUNE_STEPS" \
          --lr "$EXTRAS_FINETUNE_LR" "${EXTRAS_MIX[@]}" "${RTC_ARGS[@]}"
      LATEST=$NEXT
    fi
    if [[ "$KEYFRAME" == finetune ]]; then
      # the trained VLA learns restore_layout too: both task families, the memory keyframe (its goal head widened
      # for it), memory in 70 % of the batches, training-time RTC; the goal head's own stage follows
      VLA_ARGS+=(--include ordered_place restore_layout --memory-keyframe)
      $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" \
          --out "$RUNS/$E/vla_keyframe" --export "$RUNS/$E/vla_keyframe_export" --init-from "$LATEST" \
          --steps "$KEYFRAME_FINETUNE_STEPS" --lr "$EXTRAS_FINETUNE_LR" --subgoal-prob 0.3 --memory-prob 0.7 \
          --extras-per-batch "${RTC_ARGS[@]}"
      LATEST=$RUNS/$E/vla_keyframe_export
    fi
    if [[ "$KEYFRAME" != 0 ]]; then
      # the goal head alone (its head and a keyframe encoder of its own; nothing the backbone or the expert reads
      # changes), with hindsight "put it back" samples from every episode that picks a block
      HINDSIGHT=(--hindsight-return-prob 0.3)
      if [[ "$HINDSIGHT_DIMS" == none ]]; then HINDSIGHT=()
      elif [[ -n "$HINDSIGHT_DIMS" ]]; then HINDSIGHT+=(--hindsight-return-dims $HINDSIGHT_DIMS); fi
      $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" \
          --out "$RUNS/$E/vla_goal_head" --export "$CKPT/vla" --init-from "$LATEST" --keyframe-encoder \
          --goal-head-only --steps "$GOAL_HEAD_STEPS" "${HINDSIGHT[@]}"
      if [[ "$SUBGOAL_GOAL_HEAD_STEPS" -gt 0 ]]; then
        # the shipped VLA's goal head widened for the subgoal images (their inputs start at zero weight) and
        # trained alone again, half its goal samples with their subtask-done subgoal image
        $NICE python -m pi07_policy.train_cli vla "${VLA_ARGS[@]}" --dataset "$VLA_DATASET" \
            --out "$RUNS/$E/vla_subgoal_goal_head" --export "$RUNS/$E/vla_subgoal_goal_head_export" \
            --init-from "$CKPT/vla" --keyframe-encoder --subgoal-goal-head --goal-head-only \
            --steps "$SUBGOAL_GOAL_HEAD_STEPS" "${HINDSIGHT[@]}"
      fi
    fi
  fi
  # 4. the high-level subtask / memory decoder (micro preset: the texts are few), every episode; half of the
  #    samples lack the last finished subtask in their history (--history-lag-prob 0.5, the default), so the images
  #    must show when a subtask is done
  if want high_level; then
    $NICE python -m pi07_policy.train_cli high_level --dataset "$DATASETS/$E" --profile "$P" \
        --out "$RUNS/$E/high_level" --export "$CKPT/high_level" --config micro --steps "$HL_STEPS" --batch-size 16 \
        --lr 1e-3 --step-stride 3 --workers 1 --seed "$SEED"
  fi
  # 5. the world model (micro preset at 64 px): subgoal = end of the subtask or 3 s ahead
  if want world_model; then
    $NICE python -m pi07_policy.train_cli world_model --dataset "$DATASETS/$E" --profile "$P" \
        --out "$RUNS/$E/world_model" --export "$CKPT/world_model" --config micro --image-size 64 \
        --vae-steps "$WM_VAE_STEPS" --steps "$WM_STEPS" --batch-size 16 --workers 1 --seed "$SEED" \
        "${WM_TEXT_ARGS[@]}"
  fi
done
du -sh "$CHECKPOINTS"/*/*
