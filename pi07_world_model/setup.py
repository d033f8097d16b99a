
from setuptools import find_packages, setup

package_name = 'pi07_world_model'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='pi07 developers',
    maintainer_email='pi07@example.com',
    description='The pi07 world model: a latent flow-matching image generator that produces one s',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'world_model = pi07_world_model.world_model_node:main',
        ],
    },
)
