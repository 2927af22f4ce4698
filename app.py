"""FaceLift demo: one photo in, a relightable 3D face out, in the browser (Gradio).

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT)

The page's layout and the launch; the parts are in `demo/` (handlers, sessions, uploads, job caps,
the HTTP guard: see demo/__init__.py). The reconstruction is `facelift.FaceLift`, the pictures
`facelift.visualize`. API endpoints (see README "The app"), per client session:

* ``/reconstruct``  (image, face_index) -> the maps; keeps the reconstruction in the session
* ``/render``       (yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode,
                     lighting, albedo) -> the 3D view of the kept reconstruction
* ``/overlay``      (opacity) -> the face drawn over the photo in its pose (the first result)
* ``/downloads``    (details) -> the GLB for the 3D viewer, the files to download
* ``/turntable``    (the view parameters) -> a turntable GIF (made after the downloads, or on request)

Importing this module builds the page (`demo`, as Spaces and `gradio app.py` expect) and nothing
else: the model loads, the server starts and the memory settings apply in `main()`.
"""

from __future__ import annotations

import logging
import os
import signal

import gradio as gr

from demo.config import ANALYTICS_ENABLED, CONCURRENCY, EXAMPLES, QUEUE_SIZE, STATE_TTL_S
from demo.handlers import (
    EXAMPLE_RESULTS,
    control_states,
    downloads,
    face_choices,
    get_pipeline,
    model_view,
    overlay_view,
    reconstruct,
    reconstruct_example,
    render,
    reset_faces,
    turntable,
    warm_up,
)
from demo.http_guard import delete_session_uploads, http_guard_kwargs
from demo.jobs import attach, downloads_job_validator, view_job_validator
from demo.memory import MEMORY, limit_malloc_arenas
from demo.sessions import drop_session
from demo.uploads import photo_input
from facelift.pipeline import OVERLAY_OPACITY
from facelift.render import DEFAULT_LIGHT

# ---- the page ----------------------------------------------------------------------------------

# "Geometric details" is the one switch for the details (the API still takes mode="shaded_details")
MODES = [("Albedo", "albedo"), ("Shaded", "shaded"), ("Normals", "normals")]
LIGHTING = [("Directional (sliders)", "directional"), ("Estimated from the photo", "photo")]
ALBEDOS = [("FAN", "fan"), ("PCA", "pca")]
NOTICE = ("The weights are for non-commercial research only (trained on UTKFace, whose terms allow research "
          "use only). Your photo and its results are kept on the server for about an hour (at most 75 minutes) "
          "so that you can turn, relight and download the face, then deleted.")

CSS = """
#title h1 {margin-bottom: 0}
#info {min-height: 1.5em}
#notice {font-size: 0.85em; opacity: 0.8}
#result {scroll-margin-top: 8px}
/* output pictures: the label above the picture, not over it */
.pic label[data-testid="block-label"].float {position: static; margin: 0 0 4px 0;}
.pic .image-container {height: calc(100% - 34px) !important;}
.pic .image-container img {height: 100%; width: 100%; object-fit: contain;}
"""

# On a narrow screen the results are below the photo: bring the first one (the face in the photo,
# its opacity slider and the summary) into sight as soon as Reconstruct is pressed, so the
# progress shows there.
SCROLL_TO_RESULT = """() => {
    const el = document.getElementById('result');
    if (!el) return;
    const r = el.getBoundingClientRect();
    if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({block: 'start', behavior: 'instant'});
}"""


def build_demo() -> gr.Blocks:
    page = gr.Blocks(title="FaceLift", delete_cache=(900, STATE_TTL_S), analytics_enabled=ANALYTICS_ENABLED)
    with page as demo:
        state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=drop_session)
        gr.Markdown("# FaceLift\nOne photo in, a relightable 3D face out. Upload a portrait (or use the webcam, "
                    "or pick an example) and press **Reconstruct**; then turn and relight the face.",
                    elem_id="title")
        image_args = dict(format="png", interactive=False, buttons=["fullscreen"], elem_classes="pic")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                photo = photo_input(label="Photo", format="png", sources=["upload", "webcam", "clipboard"],
                                    height=290, elem_id="photo", elem_classes="pic")
                with gr.Row():
                    face = gr.Dropdown(choices=face_choices(1), value=0, label="Face", allow_custom_value=True,
                                       scale=1, min_width=120, elem_id="face", visible=False)
                    button = gr.Button("Reconstruct", variant="primary", scale=1, min_width=120,
                                       elem_id="reconstruct")
                # gradio's own cache_examples would keep the outputs but not the session's
                # reconstruction (the views, sliders and downloads need it) and skip the steps
                # after reconstruct: a click runs `reconstruct_example` instead (EXAMPLE_RESULTS)
                examples = gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[photo],
                                       label="Examples (photographers and licences: examples/README.md; three are CC BY-SA 3.0)",
                                       cache_examples=False, elem_id="examples") if EXAMPLES else None
                gr.Markdown(NOTICE, elem_id="notice")
            with gr.Column(scale=1, min_width=280, elem_id="result"):
                overlay = gr.Image(label="In the photo", format="jpeg", height=290, interactive=False,
                                   buttons=["download", "fullscreen"], elem_id="overlay", elem_classes="pic")
                opacity = gr.Slider(0, 1, value=OVERLAY_OPACITY, step=0.05, label="Opacity of the reconstruction",
                                    elem_id="opacity")
                info = gr.Markdown(label="Summary", elem_id="info")
            with gr.Column(scale=1, min_width=280):
                view = gr.Image(label="3D view", format="jpeg", height=290, interactive=False,
                                buttons=["download", "fullscreen"], elem_id="view", elem_classes="pic")
                mode = gr.Radio(MODES, value="shaded", label="Mode", elem_id="mode")
                with gr.Row():
                    details = gr.Checkbox(value=True, label="Geometric details", elem_id="details", min_width=100)
                    albedo = gr.Radio(ALBEDOS, value="fan", label="Albedo", elem_id="albedo", min_width=140)
            with gr.Column(scale=1, min_width=280):
                yaw = gr.Slider(-90, 90, value=0, step=1, label="Yaw (°)", elem_id="yaw")
                pitch = gr.Slider(-60, 60, value=0, step=1, label="Pitch (°)", elem_id="pitch")
                lighting = gr.Radio(LIGHTING, value="directional", label="Light", elem_id="lighting")
                light_azimuth = gr.Slider(-180, 180, value=DEFAULT_LIGHT[0], step=1, label="Light azimuth (°)",
                                          elem_id="light_azimuth")
                light_elevation = gr.Slider(-90, 90, value=DEFAULT_LIGHT[1], step=1, label="Light elevation (°)",
                                            elem_id="light_elevation")
                light_intensity = gr.Slider(0, 2, value=1.0, step=0.05, label="Light intensity",
                                            elem_id="light_intensity")

        with gr.Row(equal_height=False):
            model3d = gr.Model3D(label="Interactive 3D (GLB)", height=320, elem_id="model3d", scale=3,
                                 clear_color=(0.93, 0.93, 0.95, 1.0))
            files = gr.File(label="Downloads: GLB, OBJ zip, maps (PNG), overlay, landmarks, depth, params.json",
                            file_count="multiple", interactive=False, elem_id="downloads", scale=4)
            with gr.Column(scale=3, min_width=240):
                turntable_gif = gr.Image(label="Turntable (made after the downloads)", format="gif", height=280,
                                         interactive=False, buttons=["download", "fullscreen"], elem_id="turntable",
                                         elem_classes="pic")
                turntable_button = gr.Button("Redo turntable with the current view settings", size="sm",
                                             elem_id="turntable_button")
        gr.Markdown("### Maps in the UV layout\nDetected face: the landmarks and the face box (numbered from 1) "
                    "in the photo. Texture: the photo unwrapped, hatched where the photo does not "
                    "see the face. Skin confidence: how far the low-frequency face model explains each texel (dark on "
                    "occluders, hair, glasses, highlights). PCA albedo: the low-frequency albedo of the face model. FAN albedo: the "
                    "high-detail albedo. Displacement: the DRN's details along the normal. Lighting: the "
                    "lighting estimated from the photo, on a grey sphere.", elem_id="maps_caption")
        with gr.Row():
            detected = gr.Image(label="Detected face", height=230, elem_id="detected", **image_args)
            texture = gr.Image(label="Texture + visibility", height=230, elem_id="texture", **image_args)
            skin_confidence = gr.Image(label="Skin confidence", height=230, elem_id="skin_confidence", **image_args)
            albedo_pca = gr.Image(label="PCA albedo", height=230, elem_id="albedo_pca", **image_args)
        with gr.Row():
            albedo_fan = gr.Image(label="FAN albedo", height=230, elem_id="albedo_fan", **image_args)
            normal_map = gr.Image(label="Normal map", height=230, elem_id="normal_map", **image_args)
            sphere = gr.Image(label="Lighting", height=230, elem_id="sphere", **image_args)
            displacement = gr.Image(label="Displacement", height=230, elem_id="displacement", **image_args)

        view_inputs = [yaw, pitch, light_azimuth, light_elevation, light_intensity, details, mode, lighting, albedo]
        maps = [detected, texture, skin_confidence, albedo_pca, albedo_fan, displacement, normal_map, sphere]

        # reconstruct (the face in the photo and the maps) -> first 3D view -> downloads -> turntable:
        # each result appears as soon as it exists, and the turntable never holds back the files
        button.click(None, js=SCROLL_TO_RESULT)
        starts = [(True, "", "public", button.click, reconstruct, [photo, face, opacity, state]),
                  (False, "_face", "private", face.select, reconstruct, [photo, face, opacity, state])]
        if examples is not None:  # a click on an example shows its result at once (made once, kept)
            examples.dataset.click(None, js=SCROLL_TO_RESULT)
            starts.append((False, "_example", "example", examples.dataset.click, reconstruct_example,
                           [examples.dataset, opacity, state]))
        for public, suffix, view_suffix, trigger, handler, inputs in starts:
            visibility = "public" if public else "private"
            trigger(handler, inputs, [overlay, *maps, face, info, state],
                    api_name="reconstruct" + suffix, api_visibility=visibility,
                    show_progress_on=[overlay, *maps], concurrency_id="heavy", concurrency_limit=CONCURRENCY) \
                .success(render, [state, *view_inputs], [view], api_name=f"first_view_{view_suffix}",
                         api_visibility="private", show_progress="minimal",
                         concurrency_id="render", concurrency_limit=2 * CONCURRENCY) \
                .success(downloads, [state, details], [model3d, files], api_name="downloads" + suffix,
                         api_visibility=visibility, show_progress_on=[model3d, files], concurrency_id="heavy",
                         concurrency_limit=CONCURRENCY, validator=downloads_job_validator) \
                .success(turntable, [state, *view_inputs], [turntable_gif], api_name=f"turntable_after_{view_suffix}",
                         api_visibility="private", show_progress_on=[turntable_gif], concurrency_id="heavy",
                         concurrency_limit=CONCURRENCY, validator=view_job_validator)
        opacity.change(overlay_view, [state, opacity], [overlay], api_name="overlay", trigger_mode="always_last",
                       show_progress="hidden", concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        # moving a slider re-renders the kept reconstruction (no networks)
        gr.on([c.change for c in view_inputs],
              render, [state, *view_inputs], [view], api_name="render", trigger_mode="always_last",
              show_progress="hidden", concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        # controls that do not apply are disabled
        gr.on([mode.change, lighting.change], control_states, [mode, lighting],
              [lighting, light_azimuth, light_elevation, light_intensity, albedo], api_name="control_states",
              api_visibility="private", queue=False, show_progress="hidden")
        details.change(model_view, [state, details], [model3d], api_name="model_view", api_visibility="private",
                       concurrency_id="render", concurrency_limit=2 * CONCURRENCY)
        turntable_button.click(turntable, [state, *view_inputs], [turntable_gif], api_name="turntable",
                               concurrency_id="heavy", concurrency_limit=CONCURRENCY, validator=view_job_validator)
        photo.change(reset_faces, None, [face], api_name="reset_faces", api_visibility="private", queue=False)
        demo.unload(delete_session_uploads)
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
attach(demo)  # the job caps count this page's queue


def _stop(signum, frame):
    raise KeyboardInterrupt  # gradio then closes the server, its cache and our temp files (atexit)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop)
    limit_malloc_arenas()
    MEMORY.start()
    if os.environ.get("FACELIFT_APP_WARMUP", "1") != "0":
        warm_up()
        EXAMPLE_RESULTS.make_all_in_background()  # the other examples, while the page is served
    else:
        get_pipeline()
    demo.launch(max_file_size="50mb", css=CSS, theme=gr.themes.Soft(), app_kwargs=http_guard_kwargs())


if __name__ == "__main__":
    main()
