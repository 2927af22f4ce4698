"""Offscreen rendering of a dense face mesh (pyrender, headless OpenGL).

- `renderer`: `Renderer` (a view framed on the face, or the photo's own camera: `PhotoView`),
  CPU lighting with the SH model, `render_sh_sphere`; the view conventions
- `_gl`: the OpenGL platform, chosen on the first render (never on import), and the contexts

Settings such as `renderer.MAX_SIZE` are looked up in `facelift.render.renderer`.
"""

from .renderer import DEFAULT_AMBIENT, DEFAULT_LIGHT, MODES, PhotoView, Renderer, render_sh_sphere

__all__ = ["DEFAULT_AMBIENT", "DEFAULT_LIGHT", "MODES", "PhotoView", "Renderer", "render_sh_sphere"]
